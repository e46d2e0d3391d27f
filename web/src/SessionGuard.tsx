import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef } from "react";

import { setAccessToken, tokenExpiry, whenUnauthorized } from "./api/auth";
import { checkSession, getSignInConfig } from "./api/client";
import { renewOidcToken } from "./api/oidc";
import { SessionWatch } from "./api/session";
import { useLive, useResync } from "./live/LiveProvider";
import { reload } from "./reload";

/** A new access token from the identity provider without the user, where it offers one. */
async function renew(): Promise<string | null> {
  const config = await getSignInConfig();
  return config.mode === "oidc" ? renewOidcToken(config) : null;
}

/**
 * Watches the signed-in session (`api/session.ts`): a 401 from the API, a live socket the
 * server refused, or the token running out renew it silently where possible, else end it with
 * a message, so the user is sent back to sign-in instead of looking at a board gone quiet.
 */
export function SessionGuard({ onEnded }: { onEnded: (message: string) => void }) {
  const queries = useQueryClient();
  const resync = useResync();
  const watch = useRef<SessionWatch | null>(null);
  const ended = useRef(onEnded);
  useEffect(() => {
    ended.current = onEnded;
  });

  useEffect(() => {
    const session = new SessionWatch({
      check: checkSession,
      renew,
      onRenewed: (token) => {
        setAccessToken(token);
        // what failed with the old token loads again with the new one
        void reload(queries);
        resync("sign-in renewed");
      },
      onEnded: (message) => {
        ended.current(message);
      },
      expiry: () => tokenExpiry(),
    });
    watch.current = session;
    const release = whenUnauthorized(() => void session.unauthorized());
    session.start();
    return () => {
      release();
      session.stop();
      watch.current = null;
    };
  }, [queries, resync]);

  useLive({
    onClose: (code, opened) => {
      // refused at the handshake (the browser says only 1006), or closed for auth
      if (!opened || code === 4401 || code === 4001) watch.current?.liveRefused(code);
    },
  });
  return null;
}
