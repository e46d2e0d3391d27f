import { type SyntheticEvent, useState } from "react";

import { type DemoRole, devSignIn } from "./api/auth";

const ROLES: DemoRole[] = ["admin", "clinician", "nurse", "analyst"];

/** Development sign-in: pick a demo user. Production signs in with the identity provider. */
export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
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
    <main id="main" className="sign-in">
      <h1>HealthFlow</h1>
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
    </main>
  );
}
