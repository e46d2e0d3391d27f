import { useQuery, useQueryClient } from "@tanstack/react-query";

import { wardLimit } from "../api/auth";
import { listAlerts } from "../api/client";
import { dateTime } from "../format";
import { useLive } from "../live/LiveProvider";
import { News2Badge, SeverityBadge } from "../news2";
import { reload } from "../reload";
import { AckButton } from "./AckButton";
import { useAlerts } from "./AlertsProvider";
import { alertsOfPatient } from "./alertsState";

const STATUS_TEXT = { open: "Open", acknowledged: "Acknowledged", resolved: "Resolved" } as const;

/** This patient's alerts: active ones with their ack button, then the past ones. */
export function PatientAlerts({ patientId, name }: { patientId: string; name: string }) {
  const { state } = useAlerts();
  const queries = useQueryClient();
  const history = useQuery({
    queryKey: ["alerts", patientId],
    queryFn: () => listAlerts(wardLimit(), { patient_id: patientId, limit: 100 }),
  });
  useLive({
    onResync: () => {
      void reload(queries, ["alerts", patientId]);
    },
  });
  const alerts = alertsOfPatient(state, patientId, history.data ?? []);

  return (
    <section aria-labelledby="patient-alerts-title">
      <h2 id="patient-alerts-title">Alerts</h2>
      {history.isError && <p role="alert" className="error">{history.error.message}</p>}
      {history.isPending && alerts.length === 0 && <p>Loading alerts…</p>}
      {!history.isPending && alerts.length === 0 && <p>No alerts for this patient.</p>}
      {alerts.length > 0 && (
        <table className="board alerts" aria-label={`Alerts for ${name}`}>
          <thead>
            <tr>
              <th scope="col">Severity</th>
              <th scope="col">Status</th>
              <th scope="col">NEWS2</th>
              <th scope="col">Opened</th>
              <th scope="col">Acknowledged</th>
            </tr>
          </thead>
          <tbody>
            {alerts.map((alert) => (
              <tr key={alert.id} data-alert-id={alert.id} data-alert-status={alert.status}>
                <td><SeverityBadge severity={alert.severity} /></td>
                <td>
                  {STATUS_TEXT[alert.status]}
                  {alert.resolved_at && <span className="hint"> {dateTime(alert.resolved_at)}</span>}
                </td>
                <td>
                  <News2Badge total={alert.score} risk={alert.risk} />
                  <span className="hint"> peak {alert.peak_score}</span>
                </td>
                <td>{dateTime(alert.opened_at)}</td>
                <td>
                  {alert.status === "open" ? (
                    <AckButton alertId={alert.id} label={`Acknowledge ${alert.severity} alert for ${name}`} />
                  ) : (
                    (alert.acknowledged_by ?? "—")
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
