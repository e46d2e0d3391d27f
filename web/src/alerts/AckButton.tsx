import { useState } from "react";

import { useAccess } from "../access/AccessProvider";
import { ApiError } from "../api/client";
import { useAlerts } from "./AlertsProvider";

/**
 * Acknowledge with one click; the API's refusal (e.g. already resolved) is shown next to it.
 * A role that may not acknowledge sees that nobody has yet, and no button.
 */
export function AckButton({ alertId, label }: { alertId: string; label: string }) {
  const { acknowledge } = useAlerts();
  const allowed = useAccess().may("acknowledge");
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (!allowed) return <span className="hint">not yet</span>;
  const click = () => {
    setPending(true);
    setError(null);
    acknowledge(alertId)
      .catch((e: unknown) => {
        setError(e instanceof ApiError ? `${e.problem.title}: ${e.message}` : String(e));
      })
      .finally(() => {
        setPending(false);
      });
  };
  return (
    <>
      <button type="button" className="ack" onClick={click} disabled={pending} aria-label={label}>
        {pending ? "Acknowledging…" : "Acknowledge"}
      </button>
      {error && <span role="alert" className="field-error">{error}</span>}
    </>
  );
}
