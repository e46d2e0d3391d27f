import type { Status } from "./api/types";

/** Words and a symbol for every status: colour is only ever a second cue. */
export const STATUS_LABEL: Record<Status, string> = {
  registered: "Registered",
  waiting: "Waiting",
  in_treatment: "In treatment",
  admitted: "Admitted",
  critical: "Critical",
  stable: "Stable",
  discharged: "Discharged",
};

const STATUS_SYMBOL: Record<Status, string> = {
  registered: "○",
  waiting: "◔",
  in_treatment: "◑",
  admitted: "●",
  critical: "▲",
  stable: "✓",
  discharged: "→",
};

export function StatusBadge({ status }: { status: Status }) {
  return (
    <span className={`status status-${status}`} data-status={status}>
      <span aria-hidden="true" className="status-symbol">
        {STATUS_SYMBOL[status]}
      </span>
      {STATUS_LABEL[status]}
    </span>
  );
}
