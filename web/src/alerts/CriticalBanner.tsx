import { Link } from "react-router";

import { useBoard } from "../board/BoardProvider";
import { duration } from "../format";
import { RISK_LABEL } from "../news2";
import { useNow } from "../useNow";
import { AckButton } from "./AckButton";
import { useAlerts } from "./AlertsProvider";
import { unacknowledgedCritical } from "./alertsState";
import { patientName, place } from "./patientLabel";

const SHOWN = 3;

/** On every view: critical alerts nobody has acknowledged yet, each with its one-click ack. */
export function CriticalBanner() {
  const { state } = useAlerts();
  const board = useBoard().state;
  const now = useNow(15_000);
  const waiting = unacknowledgedCritical(state);
  if (waiting.length === 0) return null;
  const count = waiting.length;
  return (
    <section className="critical-banner" aria-labelledby="critical-banner-title" data-testid="critical-banner">
      <h2 id="critical-banner-title">
        <span aria-hidden="true">▲ </span>
        {/* announced as it appears and as the count changes, wherever the user is */}
        <span role="alert">
          {count === 1 ? "Critical alert" : `${String(count)} critical alerts`}: waiting for acknowledgement
        </span>
      </h2>
      <ul>
        {waiting.slice(0, SHOWN).map((alert) => {
          const entry = board.entries[alert.patient_id];
          const name = patientName(entry);
          return (
            <li key={alert.id} data-alert-id={alert.id}>
              <span className="banner-text">
                <strong>{name}</strong> ({place(alert.ward, entry)}): NEWS2 {alert.score},{" "}
                {RISK_LABEL[alert.risk].toLowerCase()} risk, for {duration(alert.opened_at, now)}
              </span>
              <span className="banner-actions">
                <Link to={`/patients/${alert.patient_id}`}>Open patient</Link>
                <AckButton alertId={alert.id} label={`Acknowledge critical alert for ${name}`} />
              </span>
            </li>
          );
        })}
      </ul>
      {count > SHOWN && <Link to="/alerts">All {count} critical alerts</Link>}
    </section>
  );
}
