import { useQuery } from "@tanstack/react-query";

import { getReadiness } from "../api/client";
import type { Readiness } from "../api/types";
import { useConnectionState } from "../live/LiveProvider";

const HEALTH_LABEL: Record<Readiness["status"], string> = {
  healthy: "Healthy",
  degraded: "Degraded",
  unhealthy: "Unhealthy",
};

/**
 * Service health from /health/ready. Until the hub sends MetricsUpdated (issue 5) the queue
 * depth comes from readiness, asked every 5 s: an operations view, not the live clinical path.
 */
export function Operations() {
  const ready = useQuery({ queryKey: ["ready"], queryFn: getReadiness, refetchInterval: 5000 });
  const live = useConnectionState();
  const data = ready.data;
  const queue = data?.checks.worker_queue;
  const depth = Number(queue?.depth ?? 0);
  const capacity = Number(queue?.capacity ?? 0);
  const outbox = data?.checks.outbox;

  return (
    <section aria-labelledby="ops-title">
      <h1 id="ops-title">Operations</h1>
      {ready.isError && <p role="alert" className="error">Readiness could not be read: {ready.error.message}</p>}
      {data && (
        <>
          <p className={`health health-${data.status}`} data-testid="health-status">
            Service: <strong>{HEALTH_LABEL[data.status]}</strong>
          </p>
          <dl className="tiles">
            <div>
              <dt>Worker queue</dt>
              <dd data-testid="queue-depth">{depth} / {capacity}</dd>
              <meter min={0} max={capacity || 1} value={depth} high={capacity * 0.9} aria-label="Worker queue depth" />
            </div>
            <div><dt>Busy workers</dt><dd>{String(queue?.busy ?? "—")}</dd></div>
            <div><dt>Outbox pending</dt><dd data-testid="outbox-pending">{String(outbox?.pending ?? "—")}</dd></div>
            <div><dt>Oldest unpublished</dt><dd>{String(outbox?.oldest_age_s ?? 0)} s</dd></div>
            <div><dt>This screen's live link</dt><dd>{live}</dd></div>
          </dl>
          <table className="board" aria-label="Dependency checks">
            <thead><tr><th scope="col">Check</th><th scope="col">Status</th><th scope="col">Detail</th></tr></thead>
            <tbody>
              {Object.entries(data.checks).map(([name, check]) => (
                <tr key={name}>
                  <td>{name.replace(/_/g, " ")}</td>
                  <td>{typeof check.status === "string" ? check.status : "—"}</td>
                  <td>
                    {Object.entries(check)
                      .filter(([k]) => k !== "status")
                      .map(([k, v]) => `${k.replace(/_/g, " ")}: ${String(v)}`)
                      .join(", ")}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
