import { useQuery } from "@tanstack/react-query";
import { type SyntheticEvent, useEffect, useState } from "react";

import { type DemoRole, devSignIn } from "./api/auth";
import { getSignInConfig } from "./api/client";
import { CALLBACK_PATH, completeOidcSignIn, startOidcSignIn } from "./api/oidc";
import type { SignInConfig } from "./api/types";

const ROLES: DemoRole[] = ["admin", "clinician", "nurse", "analyst"];

/** Sign-in: the identity provider when the server names one, else the development sign-in. */
export function SignIn({ onSignedIn, notice = null }: { onSignedIn: () => void; notice?: string | null }) {
  const config = useQuery({ queryKey: ["sign-in-config"], queryFn: getSignInConfig, retry: 1 });
  return (
    <main id="main" className="sign-in">
      <h1>HealthFlow</h1>
      {notice && (
        <p role="alert" className="notice" data-testid="signed-out-notice">
          <strong>Signed out: </strong>
          {notice}
        </p>
      )}
      {config.isPending && <p>Loading…</p>}
      {config.isError && (
        <p role="alert" className="error">The sign-in options could not be loaded: {config.error.message}</p>
      )}
      {config.data?.mode === "development" && <DevSignIn onSignedIn={onSignedIn} />}
      {config.data?.mode === "oidc" &&
        (window.location.pathname === CALLBACK_PATH ? (
          <OidcCallback config={config.data} onSignedIn={onSignedIn} />
        ) : (
          <OidcSignIn config={config.data} />
        ))}
    </main>
  );
}

function OidcSignIn({ config }: { config: SignInConfig }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!config.oidc?.client_id) {
    return (
      <p role="alert" className="error">
        Sign-in goes through {config.oidc?.issuer ?? "the identity provider"}, but the server names no
        client id for this dashboard (HEALTHFLOW_AUTH_CLIENT_ID).
      </p>
    );
  }
  const go = () => {
    setBusy(true);
    setError(null);
    const here = window.location.pathname + window.location.search;
    startOidcSignIn(config, here).catch((e: unknown) => {
      setBusy(false);
      setError(e instanceof Error ? e.message : String(e));
    });
  };
  return (
    <>
      <p>Sign in with your organisation's account.</p>
      <button type="button" onClick={go} disabled={busy}>
        {busy ? "Going to sign-in…" : "Sign in with your organisation"}
      </button>
      <p className="hint">Identity provider: {config.oidc.issuer}</p>
      {error && <p role="alert" className="error">{error}</p>}
    </>
  );
}

function OidcCallback({ config, onSignedIn }: { config: SignInConfig; onSignedIn: () => void }) {
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    completeOidcSignIn(config).then(
      (back) => {
        // the code and state must not stay in the address bar or the history
        window.history.replaceState(null, "", back);
        onSignedIn();
      },
      (e: unknown) => {
        setError(e instanceof Error ? e.message : String(e));
      },
    );
  }, [config, onSignedIn]);
  if (error) {
    return (
      <>
        <p role="alert" className="error">Sign-in did not complete: {error}</p>
        <p><a href="/">Try again</a></p>
      </>
    );
  }
  return <p>Signing in…</p>;
}

function DevSignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [role, setRole] = useState<DemoRole>("admin");
  const [name, setName] = useState("demo");
  const [ward, setWard] = useState("");
  const [error, setError] = useState<string | null>(null);

  const submit = (event: SyntheticEvent) => {
    event.preventDefault();
    setError(null);
    devSignIn(role, name.trim() || "demo", ward.trim() || null).then(onSignedIn, (e: unknown) => {
      setError(e instanceof Error ? e.message : String(e));
    });
  };

  return (
    <>
      <p>Development sign-in: choose a demo user.</p>
      <form onSubmit={submit}>
        <label>
          Role
          <select value={role} onChange={(e) => { setRole(e.target.value as DemoRole); }}>
            {ROLES.map((r) => (
              <option key={r} value={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Name
          <input value={name} onChange={(e) => { setName(e.target.value); }} maxLength={100} />
        </label>
        <label>
          Ward (limits a nurse)
          <input value={ward} onChange={(e) => { setWard(e.target.value); }} maxLength={50} />
        </label>
        <button type="submit">Sign in</button>
        {error && <p role="alert">{error}</p>}
      </form>
    </>
  );
}
