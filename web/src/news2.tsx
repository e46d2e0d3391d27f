import type { Risk, Severity } from "./api/types";

/** NEWS2 clinical risk in words (RCP chart 2); colour is only ever a second cue. */
export const RISK_LABEL: Record<Risk, string> = {
  low: "Low",
  low_medium: "Low–medium",
  medium: "Medium",
  high: "High",
};

const RISK_SYMBOL: Record<Risk, string> = {
  low: "○",
  low_medium: "◐",
  medium: "◆",
  high: "▲",
};

export const SEVERITY_LABEL: Record<Severity, string> = { urgent: "Urgent", critical: "Critical" };

/** "NEWS2 7, high risk": the score, the risk word and a symbol, with the risk's colour. */
export function News2Badge({ total, risk }: { total: number; risk: Risk }) {
  return (
    <span className={`news2 risk-${risk}`} data-risk={risk} data-news2={total}>
      <span aria-hidden="true">{RISK_SYMBOL[risk]}</span>
      <span className="news2-total">{total}</span>
      <span className="news2-risk">{RISK_LABEL[risk]}</span>
    </span>
  );
}

export function SeverityBadge({ severity }: { severity: Severity }) {
  return (
    <span className={`severity severity-${severity}`} data-severity={severity}>
      <span aria-hidden="true">{severity === "critical" ? "▲" : "◆"}</span>
      {SEVERITY_LABEL[severity]}
    </span>
  );
}
