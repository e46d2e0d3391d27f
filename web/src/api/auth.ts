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
 * Who is signed in, for display and for "acknowledged by": the token's name claims, read without
 * checking the signature (the server checks it on every request; this is only a label).
 */
export function currentUser(): string {
  const current = accessToken();
  const payload = current?.split(".")[1];
  if (!payload) return "unknown";
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json) as Record<string, unknown>;
    for (const name of ["name", "preferred_username", "sub"]) {
      const value = claims[name];
      if (typeof value === "string" && value.trim()) return value.trim().slice(0, 100);
    }
  } catch {
    // not a JWT we can read: the label is all that is lost
  }
  return "unknown";
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
