/**
 * Every alert the dashboard knows, by id: loaded over HTTP (active ones and recent history),
 * kept current by `AlertRaised` / `AlertUpdated`. An alert's `version` grows with every change,
 * so of two copies the higher version wins, whichever arrived first.
 */
import type { Alert, AlertStatus, Risk, Severity } from "../api/types";
import type { LiveMessage } from "../live/socket";

export const ALERT_MESSAGES = ["AlertRaised", "AlertUpdated"];

export interface AlertEntry extends Alert {
  /** The `generation` of the last live change; a reload started before it must not drop it. */
  touched: number;
}

export interface AlertsState {
  alerts: Record<string, AlertEntry>;
  generation: number;
  loaded: boolean;
}

export type AlertsAction =
  | { kind: "reloadStarted" }
  | { kind: "loaded"; alerts: Alert[]; generation: number }
  | { kind: "live"; message: LiveMessage }
  | { kind: "saved"; alert: Alert };

export const initialAlerts: AlertsState = { alerts: {}, generation: 0, loaded: false };

const SEVERITIES: readonly Severity[] = ["urgent", "critical"];
const STATUSES: readonly AlertStatus[] = ["open", "acknowledged", "resolved"];
const RISKS: readonly Risk[] = ["low", "low_medium", "medium", "high"];

function text(value: unknown): value is string {
  return typeof value === "string";
}

function textOrNull(value: unknown): value is string | null {
  return value === null || typeof value === "string";
}

/** The alert a live message carries (see vitals/monitor.py `alert_to_dict`), or null. */
export function alertFromMessage(message: LiveMessage): Alert | null {
  if (!ALERT_MESSAGES.includes(message.type)) return null;
  const d = message.data;
  if (!text(d.id) || !text(d.patient_id) || !text(d.ward)) return null;
  if (!SEVERITIES.includes(d.severity as Severity) || !STATUSES.includes(d.status as AlertStatus)) {
    return null;
  }
  if (!RISKS.includes(d.risk as Risk)) return null;
  const numbers = [d.score, d.peak_score, d.readings, d.version];
  if (!numbers.every((n) => typeof n === "number")) return null;
  if (!text(d.opened_at) || !text(d.updated_at)) return null;
  if (!textOrNull(d.acknowledged_by) || !textOrNull(d.acknowledged_at)) return null;
  if (!textOrNull(d.resolved_at)) return null;
  return {
    id: d.id,
    patient_id: d.patient_id,
    ward: d.ward,
    severity: d.severity as Severity,
    status: d.status as AlertStatus,
    score: d.score as number,
    risk: d.risk as Risk,
    peak_score: d.peak_score as number,
    readings: d.readings as number,
    opened_at: d.opened_at,
    updated_at: d.updated_at,
    acknowledged_by: d.acknowledged_by,
    acknowledged_at: d.acknowledged_at,
    resolved_at: d.resolved_at,
    version: d.version as number,
  };
}

function put(state: AlertsState, alert: Alert, touched: number): AlertsState {
  const current = state.alerts[alert.id];
  if (current !== undefined && current.version >= alert.version) return state;
  return { ...state, alerts: { ...state.alerts, [alert.id]: { ...alert, touched } } };
}

export function alertsReducer(state: AlertsState, action: AlertsAction): AlertsState {
  switch (action.kind) {
    case "reloadStarted":
      return { ...state, generation: state.generation + 1 };
    case "loaded": {
      // kept: alerts a live message or an acknowledgement touched after this reload began
      const alerts: Record<string, AlertEntry> = {};
      for (const entry of Object.values(state.alerts)) {
        if (entry.touched >= action.generation) alerts[entry.id] = entry;
      }
      let next: AlertsState = { ...state, alerts, loaded: true };
      for (const alert of action.alerts) next = put(next, alert, 0);
      return next;
    }
    case "live": {
      const alert = alertFromMessage(action.message);
      return alert === null ? state : put(state, alert, state.generation);
    }
    case "saved":
      return put(state, action.alert, state.generation);
  }
}

const RANK: Record<Severity, number> = { critical: 0, urgent: 1 };

function bySeverityThenAge(a: Alert, b: Alert): number {
  return RANK[a.severity] - RANK[b.severity] || a.opened_at.localeCompare(b.opened_at);
}

/** Alerts not resolved yet: critical before urgent, then the longest-waiting first. */
export function activeAlerts(state: AlertsState): AlertEntry[] {
  return Object.values(state.alerts)
    .filter((a) => a.status !== "resolved")
    .sort(bySeverityThenAge);
}

/** What the banner shows on every view: critical alerts nobody has acknowledged yet. */
export function unacknowledgedCritical(state: AlertsState): AlertEntry[] {
  return activeAlerts(state).filter((a) => a.status === "open" && a.severity === "critical");
}

/** How many alerts wait for someone to take them on (status open). */
export function waitingCount(state: AlertsState): number {
  return Object.values(state.alerts).filter((a) => a.status === "open").length;
}

/** Resolved alerts, most recently resolved first. */
export function resolvedAlerts(state: AlertsState, limit = 50): AlertEntry[] {
  return Object.values(state.alerts)
    .filter((a) => a.status === "resolved")
    .sort((a, b) => (b.resolved_at ?? "").localeCompare(a.resolved_at ?? ""))
    .slice(0, limit);
}

/**
 * One patient's alerts, from the live state and from a separate read of the patient's history,
 * newest version of each: active ones first (by severity and age), then the past, newest first.
 */
export function alertsOfPatient(state: AlertsState, patientId: string, fetched: Alert[] = []): Alert[] {
  const byId = new Map<string, Alert>();
  for (const alert of [...fetched, ...Object.values(state.alerts)]) {
    if (alert.patient_id !== patientId) continue;
    const known = byId.get(alert.id);
    if (known === undefined || alert.version > known.version) byId.set(alert.id, alert);
  }
  const mine = [...byId.values()];
  const active = mine.filter((a) => a.status !== "resolved").sort(bySeverityThenAge);
  const past = mine
    .filter((a) => a.status === "resolved")
    .sort((a, b) => b.opened_at.localeCompare(a.opened_at));
  return [...active, ...past];
}
