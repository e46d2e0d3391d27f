import { useQuery } from "@tanstack/react-query";
import { createContext, type ReactNode, useContext, useMemo } from "react";
import { Link } from "react-router";

import { ApiError, getSession } from "../api/client";
import { LiveProvider } from "../live/LiveProvider";
import { SessionGuard } from "../SessionGuard";
import { type Access, accessFrom, type Feature, FEATURE_TEXT } from "./access";

const AccessContext = createContext<Access | null>(null);

/**
 * Asks the server once what the signed-in user may do (GET /api/auth/session) and renders the
 * dashboard for that: nothing is offered, and nothing loads, that the server would refuse.
 * A token refused at this first ask is handed to the session watch, which renews it where it
 * can or ends the sign-in with a message, as for any other 401.
 */
export function AccessProvider({
  onEnded,
  children,
}: {
  onEnded: (message: string) => void;
  children: (access: Access) => ReactNode;
}) {
  // the roles of a token do not change while it lives; a renewed sign-in asks again
  const session = useQuery({ queryKey: ["session"], queryFn: getSession, staleTime: Infinity });
  const access = useMemo(() => (session.data ? accessFrom(session.data) : null), [session.data]);

  if (access) return <AccessContext.Provider value={access}>{children(access)}</AccessContext.Provider>;
  if (session.isError) {
    const status = session.error instanceof ApiError ? session.error.problem.status : 0;
    if (status === 401) {
      return (
        <LiveProvider topics={[]} connect={false}>
          <SessionGuard onEnded={onEnded} />
          <p>Checking your sign-in…</p>
        </LiveProvider>
      );
    }
    return (
      <main id="main" className="sign-in">
        <h1>HealthFlow</h1>
        <p role="alert" className="error">
          {status === 403
            ? "Your sign-in gives no access to this dashboard."
            : `What your sign-in allows could not be loaded: ${session.error.message}`}
        </p>
        {status !== 403 && (
          <button type="button" onClick={() => void session.refetch()}>Try again</button>
        )}{" "}
        <button type="button" onClick={() => { onEnded("Sign in as someone else."); }}>
          Sign out
        </button>
      </main>
    );
  }
  return <p>Loading…</p>;
}

/** The signed-in user's reach; only under AccessProvider. */
export function useAccess(): Access {
  const access = useContext(AccessContext);
  if (access === null) throw new Error("useAccess needs an AccessProvider above it");
  return access;
}

/** Says plainly that this view is not for the user's role, with the way to their own. */
export function NotPermitted({ feature }: { feature: Feature }) {
  const { roles, home } = useAccess();
  const who = roles.length > 0 ? roles.join(", ") : "none";
  return (
    <section aria-labelledby="not-permitted-title" data-testid="not-permitted">
      <h1 id="not-permitted-title">Not permitted for your role</h1>
      <p>
        {FEATURE_TEXT[feature]} is not permitted for your role (signed in as: {who}).
      </p>
      {home && (
        <p>
          <Link to={home}>Go to your start page</Link>
        </p>
      )}
    </section>
  );
}

/** The view when the user may use it, else the refusal: for a visit by address or bookmark. */
export function Permitted({ feature, children }: { feature: Feature; children: ReactNode }) {
  return useAccess().may(feature) ? children : <NotPermitted feature={feature} />;
}
