/**
 * The one place requests get their credentials: every fetch and the live socket carry the
 * signed-in token. The token lives in sessionStorage (this tab only, gone when it closes).
 */
const KEY = "healthflow.accessToken";

function stored(): string | null {
  try {
    return window.sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

let token: string | null = typeof window === "undefined" ? null : stored();

export function setAccessToken(value: string | null): void {
  token = value;
  missed = false;
  try {
    if (value) window.sessionStorage.setItem(KEY, value);
    else window.sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the token lives in memory for this page only
  }
}

export function accessToken(): string | null {
  return token;
}

/**
 * The token's claims, read without checking the signature: the server checks it on every
 * request; the dashboard only uses them as labels and to ask for what it may see.
 */
export function tokenClaims(current: string | null = accessToken()): Record<string, unknown> {
  const payload = current?.split(".")[1];
  if (!payload) return {};
  try {
    const binary = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const json = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    const claims: unknown = JSON.parse(json);
    const isObject = typeof claims === "object" && claims !== null && !Array.isArray(claims);
    return isObject ? (claims as Record<string, unknown>) : {};
  } catch {
    return {}; // not a JWT we can read
  }
}

/** Who is signed in, for display and for "acknowledged by": the token's name claims. */
export function currentUser(): string {
  const claims = tokenClaims();
  for (const name of ["name", "preferred_username", "sub"]) {
    const value = claims[name];
    if (typeof value === "string" && value.trim()) return value.trim().slice(0, 100);
  }
  return "unknown";
}

// Roles that are never limited to a ward, whatever `ward` claim their token carries.
const UNLIMITED = ["admin", "clinician", "service"];

/**
 * The ward the signed-in user is limited to, or null. The server limits a nurse whose token has
 * a `ward` claim to that ward (patients, NEWS2, alerts and live topics). The roles are read from
 * the `roles` claim (the development tokens', and the default HEALTHFLOW_AUTH_ROLES_CLAIM); when
 * a token carries its roles elsewhere, a `ward` claim is taken as the limit: asking for one ward
 * too many would be refused, asking for one ward only is always allowed.
 */
export function wardLimit(claims: Record<string, unknown> = tokenClaims()): string | null {
  const ward = claims.ward;
  if (typeof ward !== "string" || ward === "") return null;
  const raw = claims.roles;
  const roles = typeof raw === "string" ? [raw] : Array.isArray(raw) ? raw : [];
  return roles.some((r) => UNLIMITED.includes(r as string)) ? null : ward;
}

/** When the token stops being valid (its `exp`, in ms since the epoch), or null if it says not. */
export function tokenExpiry(claims: Record<string, unknown> = tokenClaims()): number | null {
  return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
}

type Handler = () => void;
let onUnauthorized: Handler | null = null;
let missed = false;

/**
 * Who hears of a 401 (the session watch, `api/session.ts`); one that came while nobody listened
 * is handed over at once. Returns the release.
 */
export function whenUnauthorized(handler: Handler): () => void {
  onUnauthorized = handler;
  if (missed) {
    missed = false;
    handler();
  }
  return () => {
    if (onUnauthorized === handler) onUnauthorized = null;
  };
}

/**
 * A request was answered 401. Only counts when it carried the token held now: a request sent
 * before a renewal says nothing about the new token.
 */
export function reportUnauthorized(sentAuthorization: string | null): void {
  if (sentAuthorization !== (authHeaders().Authorization ?? null)) return;
  if (onUnauthorized) onUnauthorized();
  else missed = true;
}

/** Headers every API request carries (`Authorization: Bearer ...` once signed in). */
export function authHeaders(): Record<string, string> {
  const current = accessToken();
  return current ? { Authorization: `Bearer ${current}` } : {};
}

/** The live socket's URL: browsers cannot set headers on a WebSocket, so the token rides along. */
export function liveUrl(location: Location = window.location): string {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const current = accessToken();
  if (current) url.searchParams.set("access_token", current);
  return url.toString();
}

export type DemoRole = "admin" | "clinician" | "nurse" | "analyst";

/** Development sign-in (embedded default only): the server mints a token for a demo user. */
export async function devSignIn(role: DemoRole, sub: string, ward: string | null): Promise<void> {
  const response = await fetch("/api/dev/sign-in", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ role, sub, ...(ward ? { ward } : {}) }),
  });
  const body = (await response.json()) as { access_token?: string; detail?: string };
  if (!response.ok || !body.access_token) {
    throw new Error(body.detail ?? `sign-in refused (${String(response.status)})`);
  }
  setAccessToken(body.access_token);
}
