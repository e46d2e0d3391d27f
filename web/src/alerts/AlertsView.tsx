import { Link } from "react-router";

import { useBoard } from "../board/BoardProvider";
import { dateTime, duration } from "../format";
import { News2Badge, SeverityBadge } from "../news2";
import { useNow } from "../useNow";
import { AckButton } from "./AckButton";
import { useAlerts } from "./AlertsProvider";
import { activeAlerts, resolvedAlerts, waitingCount } from "./alertsState";
import { patientName, place } from "./patientLabel";

/** Open alerts (critical first, longest waiting first), one-click acknowledge, and history. */
export function AlertsView() {
  const { state, error } = useAlerts();
  const board = useBoard().state;
  const now = useNow(15_000);
  const active = activeAlerts(state);
  const resolved = resolvedAlerts(state);
  const waiting = waitingCount(state);

  return (
    <section aria-labelledby="alerts-title">
      <h1 id="alerts-title">Alerts</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p className="hint" aria-live="polite">
        {!state.loaded
          ? "Loading alerts…"
          : `${waiting} waiting for acknowledgement, ${active.length} active in all.`}
      </p>
      <h2>Active</h2>
      {state.loaded && active.length === 0 && <p>No active alerts.</p>}
      {active.length > 0 && (
        <table className="board alerts" aria-label="Active alerts, critical first, longest waiting first">
          <thead>
            <tr>
              <th scope="col">Severity</th>
              <th scope="col">Patient</th>
              <th scope="col">Where</th>
              <th scope="col">NEWS2 now</th>
              <th scope="col">Open for</th>
              <th scope="col">Acknowledged</th>
            </tr>
          </thead>
          <tbody>
            {active.map((alert) => {
              const entry = board.entries[alert.patient_id];
              const name = patientName(entry);
              return (
                <tr
                  key={alert.id}
                  data-alert-id={alert.id}
                  data-alert-status={alert.status}
                  className={alert.status === "open" ? `alert-open alert-${alert.severity}` : undefined}
                >
                  <td><SeverityBadge severity={alert.severity} /></td>
                  <td><Link to={`/patients/${alert.patient_id}`}>{name}</Link></td>
                  <td>{place(alert.ward, entry)}</td>
                  <td>
                    <News2Badge total={alert.score} risk={alert.risk} />
                    {alert.peak_score > alert.score && <span className="hint"> (peak {alert.peak_score})</span>}
                  </td>
                  <td><time dateTime={alert.opened_at} title={dateTime(alert.opened_at)}>{duration(alert.opened_at, now)}</time></td>
                  <td>
                    {alert.status === "acknowledged" ? (
                      <span data-acknowledged-by={alert.acknowledged_by}>
                        <span aria-hidden="true">✓ </span>by {alert.acknowledged_by}
                        {alert.acknowledged_at && <span className="hint"> {duration(alert.acknowledged_at, now)} ago</span>}
                      </span>
                    ) : (
                      <AckButton alertId={alert.id} label={`Acknowledge ${alert.severity} alert for ${name}`} />
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <h2>Resolved</h2>
      {state.loaded && resolved.length === 0 && <p>No resolved alerts yet.</p>}
      {resolved.length > 0 && (
        <table className="board alerts" aria-label="Resolved alerts, most recent first">
          <thead>
            <tr>
              <th scope="col">Severity</th>
              <th scope="col">Patient</th>
              <th scope="col">Ward</th>
              <th scope="col">Peak NEWS2</th>
              <th scope="col">Opened</th>
              <th scope="col">Resolved</th>
              <th scope="col">Acknowledged by</th>
            </tr>
          </thead>
          <tbody>
            {resolved.map((alert) => (
              <tr key={alert.id} data-alert-id={alert.id} data-alert-status="resolved">
                <td><SeverityBadge severity={alert.severity} /></td>
                <td>
                  <Link to={`/patients/${alert.patient_id}`}>{patientName(board.entries[alert.patient_id])}</Link>
                </td>
                <td>{alert.ward}</td>
                <td>{alert.peak_score}</td>
                <td>{dateTime(alert.opened_at)}</td>
                <td>{alert.resolved_at ? dateTime(alert.resolved_at) : "—"}</td>
                <td>{alert.acknowledged_by ?? "nobody"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
