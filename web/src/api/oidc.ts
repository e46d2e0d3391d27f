/**
 * OIDC sign-in for when the server names an issuer (GET /api/auth/config): the authorization
 * code flow with PKCE, done by oidc-client-ts. The access token it gets is handed to `auth.ts`,
 * the one place requests take their credentials from; the ID token is not sent anywhere.
 */
import { UserManager, WebStorageStateStore } from "oidc-client-ts";

import { setAccessToken } from "./auth";
import type { SignInConfig } from "./types";

export const CALLBACK_PATH = "/auth/callback";

type Oidc = NonNullable<SignInConfig["oidc"]>;

function manager(oidc: Oidc & { client_id: string }): UserManager {
  return new UserManager({
    authority: oidc.issuer,
    client_id: oidc.client_id,
    redirect_uri: `${window.location.origin}${CALLBACK_PATH}`,
    response_type: "code",
    scope: oidc.scope,
    // this tab only, like the development sign-in's token
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
    stateStore: new WebStorageStateStore({ store: window.sessionStorage }),
    loadUserInfo: false,
    // renewal in a hidden frame needs framing the issuer, which our CSP forbids; renewal with a
    // refresh token is a plain call to the token endpoint: `renewOidcToken` does that when the
    // issuer gave one, else the user signs in again (issuers keep their own session: one click)
    automaticSilentRenew: false,
  });
}

function usable(oidc: Oidc | null | undefined): (Oidc & { client_id: string }) | null {
  return oidc?.client_id ? { ...oidc, client_id: oidc.client_id } : null;
}

/** Go to the issuer's sign-in page; back at `returnTo` afterwards. */
export async function startOidcSignIn(config: SignInConfig, returnTo: string): Promise<void> {
  const oidc = usable(config.oidc);
  if (oidc === null) throw new Error("the server names no OIDC client id for the dashboard");
  await manager(oidc).signinRedirect({ state: returnTo });
}

let completing: Promise<string> | null = null;

/** Finish the sign-in on the callback page: code + verifier for tokens; returns where to go.
 * Once per page: a code can be redeemed only once, however often a view asks. */
export function completeOidcSignIn(config: SignInConfig): Promise<string> {
  completing ??= redeem(config);
  return completing;
}

async function redeem(config: SignInConfig): Promise<string> {
  const oidc = usable(config.oidc);
  if (oidc === null) throw new Error("the server names no OIDC client id for the dashboard");
  const user = await manager(oidc).signinRedirectCallback();
  setAccessToken(user.access_token);
  const back = typeof user.state === "string" && user.state.startsWith("/") ? user.state : "/";
  return back === CALLBACK_PATH ? "/" : back;
}

/**
 * A new access token without the user: oidc-client-ts's silent sign-in with the refresh token
 * the issuer handed out at sign-in (refresh_token grant at its token endpoint, which the CSP
 * allows). Null when there is none: without one silent sign-in would need a hidden frame.
 */
export async function renewOidcToken(config: SignInConfig): Promise<string | null> {
  const oidc = usable(config.oidc);
  if (oidc === null) return null;
  const users = manager(oidc);
  const user = await users.getUser();
  if (!user?.refresh_token) return null;
  const renewed = await users.signinSilent();
  return renewed?.access_token ?? null;
}
