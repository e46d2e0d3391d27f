/**
 * One patient's vitals on the detail view: a chart series (thinned to one reading per slice of
 * time, as the API's `every` does), the newest unthinned readings, and the latest NEWS2, merged
 * from HTTP loads and live `VitalsUpdated` messages in whatever order they come.
 */
import type { News2, Reading, Risk } from "../api/types";
import type { LiveMessage } from "../live/socket";

export interface Window {
  label: string;
  ms: number;
  /** Seconds per chart point (the API's `every`): at most ~720 points per window. */
  everyS: number;
}

export const WINDOWS: readonly Window[] = [
  { label: "Last hour", ms: 3_600_000, everyS: 5 },
  { label: "Last day", ms: 86_400_000, everyS: 120 },
];

/** One reading as charted: time in ms, the measurements, the NEWS2 total it scored. */
export interface Point {
  t: number;
  id: string;
  values: Record<string, number | string | boolean>;
  news2: number | null;
}

export interface VitalsState {
  patientId: string;
  everyS: number;
  series: Point[];
  /** The newest readings, unthinned (values for the NEWS2 breakdown), oldest first. */
  recent: Point[];
  news2: News2 | null;
  /** At least one reading exists (so asking for NEWS2 will not be a 404). */
  hasReadings: boolean;
}

export const RECENT = 50;

export type VitalsAction =
  | { kind: "series"; readings: Reading[]; everyS: number }
  | { kind: "recent"; readings: Reading[] }
  | { kind: "news2"; news2: News2 }
  | { kind: "live"; message: LiveMessage };

export function initialVitals(patientId: string, everyS: number): VitalsState {
  return { patientId, everyS, series: [], recent: [], news2: null, hasReadings: false };
}

/** A device sends one reading per instant (the API dedupes by both), so they name a reading in
 * loads and live messages alike (live messages carry no reading id). */
function readingKey(device: string, t: number): string {
  return `${device}@${String(t)}`;
}

export function pointOf(reading: Reading): Point {
  const t = Date.parse(reading.ts);
  return {
    t,
    id: readingKey(reading.device_id, t),
    values: reading.values,
    news2: reading.news2?.total ?? null,
  };
}

/** Per slice of `everyS` seconds, the newest point; sorted oldest first. */
export function thin(points: Point[], everyS: number): Point[] {
  const bySlice = new Map<number, Point>();
  for (const p of points) {
    const slice = Math.floor(p.t / 1000 / everyS);
    const kept = bySlice.get(slice);
    if (kept === undefined || p.t > kept.t || (p.t === kept.t && p.id > kept.id)) {
      bySlice.set(slice, p);
    }
  }
  return [...bySlice.values()].sort((a, b) => a.t - b.t);
}

function union(a: Point[], b: Point[]): Point[] {
  const byId = new Map<string, Point>();
  for (const p of [...a, ...b]) byId.set(p.id, p);
  return [...byId.values()].sort((x, y) => x.t - y.t || x.id.localeCompare(y.id));
}

const RISKS: readonly Risk[] = ["low", "low_medium", "medium", "high"];

function news2Of(raw: unknown): News2 | null {
  if (typeof raw !== "object" || raw === null) return null;
  const n = raw as Record<string, unknown>;
  if (typeof n.total !== "number" || !RISKS.includes(n.risk as Risk)) return null;
  if (typeof n.assessed_at !== "string" || typeof n.sub_scores !== "object" || !n.sub_scores) {
    return null;
  }
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
  return {
    total: n.total,
    risk: n.risk as Risk,
    sub_scores: n.sub_scores as Record<string, number>,
    carried_forward: list(n.carried_forward),
    missing: list(n.missing),
    assessed_at: n.assessed_at,
    spo2_scale: typeof n.spo2_scale === "number" ? n.spo2_scale : 1,
  };
}

/** The reading and NEWS2 of a `VitalsUpdated` for this patient (vitals/monitor.py), or null. */
export function liveReading(message: LiveMessage, patientId: string): { point: Point; news2: News2 | null } | null {
  if (message.type !== "VitalsUpdated" || message.data.patient_id !== patientId) return null;
  const raw: unknown = message.data.reading;
  if (typeof raw !== "object" || raw === null) return null;
  const reading = raw as Record<string, unknown>;
  if (typeof reading.ts !== "string") return null;
  const t = Date.parse(reading.ts);
  if (Number.isNaN(t)) return null;
  const values: Record<string, number | string | boolean> = {};
  for (const [name, value] of Object.entries(reading)) {
    if (name === "ts" || name === "spo2_scale") continue;
    if (["number", "string", "boolean"].includes(typeof value)) values[name] = value as number;
  }
  const news2 = news2Of(message.data.news2);
  const device = typeof message.data.device_id === "string" ? message.data.device_id : "";
  return { point: { t, id: readingKey(device, t), values, news2: news2?.total ?? null }, news2 };
}

function newerNews2(current: News2 | null, next: News2): News2 {
  if (current === null) return next;
  return Date.parse(next.assessed_at) >= Date.parse(current.assessed_at) ? next : current;
}

export function vitalsReducer(state: VitalsState, action: VitalsAction): VitalsState {
  switch (action.kind) {
    case "series": {
      const loaded = action.readings.map(pointOf);
      // live points newer than the load stay; the load wins where both have the slice
      const series = thin(union(state.everyS === action.everyS ? state.series : [], loaded), action.everyS);
      return { ...state, everyS: action.everyS, series, hasReadings: state.hasReadings || loaded.length > 0 };
    }
    case "recent": {
      const recent = union(state.recent, action.readings.map(pointOf)).slice(-RECENT);
      return { ...state, recent, hasReadings: state.hasReadings || recent.length > 0 };
    }
    case "news2":
      return { ...state, news2: newerNews2(state.news2, action.news2), hasReadings: true };
    case "live": {
      const live = liveReading(action.message, state.patientId);
      if (live === null) return state;
      return {
        ...state,
        series: thin(union(state.series, [live.point]), state.everyS),
        recent: union(state.recent, [live.point]).slice(-RECENT),
        news2: live.news2 ? newerNews2(state.news2, live.news2) : state.news2,
        hasReadings: true,
      };
    }
  }
}

/** The points of the window ending at `now`. */
export function inWindow(points: Point[], now: number, windowMs: number): Point[] {
  return points.filter((p) => p.t >= now - windowMs);
}

/** NEWS2 parameters in the order of the RCP chart, with the reading field each is scored from. */
export const PARAMETERS = [
  { key: "resp_rate", label: "Respiration rate", field: "resp_rate", unit: "/min" },
  { key: "spo2", label: "SpO₂", field: "spo2", unit: "%" },
  { key: "air_or_oxygen", label: "Air or oxygen", field: "on_oxygen", unit: "" },
  { key: "systolic_bp", label: "Systolic blood pressure", field: "systolic_bp", unit: "mmHg" },
  { key: "heart_rate", label: "Pulse", field: "heart_rate", unit: "/min" },
  { key: "consciousness", label: "Consciousness", field: "consciousness", unit: "" },
  { key: "temperature", label: "Temperature", field: "temperature", unit: "°C" },
] as const;

export type Basis = "measured" | "carried forward" | "missing";

export interface ParameterRow {
  key: string;
  label: string;
  score: number | null;
  basis: Basis;
  /** The value scored, when one of the recent readings has it; null otherwise. */
  value: string | null;
}

const CONSCIOUSNESS: Record<string, string> = {
  A: "Alert",
  C: "New confusion",
  V: "Responds to voice",
  P: "Responds to pain",
  U: "Unresponsive",
};

function shown(field: string, value: number | string | boolean, unit: string): string {
  if (field === "on_oxygen") return value === true ? "Oxygen" : "Air";
  if (field === "consciousness") return CONSCIOUSNESS[String(value)] ?? String(value);
  return unit ? `${String(value)} ${unit}` : String(value);
}

/** The NEWS2 breakdown: each parameter's sub-score, whether it was measured, carried forward
 * from an earlier reading or missing, and the value scored (the newest recent reading with it,
 * no later than the assessment). */
export function breakdown(news2: News2, recent: Point[]): ParameterRow[] {
  const at = Date.parse(news2.assessed_at);
  const upTo = recent.filter((p) => p.t <= at).sort((a, b) => b.t - a.t);
  return PARAMETERS.map(({ key, label, field, unit }) => {
    const basis: Basis = news2.missing.includes(key)
      ? "missing"
      : news2.carried_forward.includes(key)
        ? "carried forward"
        : "measured";
    const source = basis === "missing" ? undefined : upTo.find((p) => field in p.values);
    const raw = source?.values[field];
    const name = key === "spo2" ? `${label} (scale ${String(news2.spo2_scale)})` : label;
    return {
      key,
      label: name,
      score: news2.sub_scores[key] ?? null,
      basis,
      value: raw === undefined ? null : shown(field, raw, unit),
    };
  });
}
