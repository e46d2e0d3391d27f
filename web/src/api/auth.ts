/**
 * The one place requests get their credentials. The security issue adds sign-in: it makes
 * `accessToken()` return the signed-in token, and every fetch and the live socket carry it.
 */
let token: string | null = null;

export function setAccessToken(value: string | null): void {
  token = value;
}

export function accessToken(): string | null {
  return token;
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
