/**
 * What the operations view shows from `MetricsUpdated` (realtime/metrics_feed.py): the latest
 * figures of each server instance, added up, and a short history of the event rates.
 */
import type { LiveMessage } from "../live/socket";

export interface Snapshot {
  instance: string;
  at: number;
  eventsInPerS: number;
  eventsProcessedPerS: number;
  queueDepth: number;
  queueCapacity: number;
  connectedClients: number;
  /** null: the server could not tell this time (a slow or failing source). */
  deadLetters: number | null;
  openAlerts: Record<string, number> | null;
}

export interface Sample {
  t: number;
  eventsIn: number;
  processed: number;
}

export interface MetricsState {
  byInstance: Record<string, Snapshot>;
  history: Sample[];
}

/** About two minutes at the default one message a second. */
export const HISTORY = 120;

export const initialMetrics: MetricsState = { byInstance: {}, history: [] };

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function counts(value: unknown): Record<string, number> | null {
  if (typeof value !== "object" || value === null) return null;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "number") out[k] = v;
  return out;
}

export function snapshotOf(message: LiveMessage): Snapshot | null {
  if (message.type !== "MetricsUpdated") return null;
  const d = message.data;
  const queue = d.worker_queue as Record<string, unknown> | null | undefined;
  const values = [
    num(d.events_in_per_s),
    num(d.events_processed_per_s),
    num(queue?.depth),
    num(queue?.capacity),
    num(d.connected_clients),
  ];
  if (typeof d.instance !== "string" || values.some((v) => v === null)) return null;
  const [eventsIn, processed, depth, capacity, clients] = values as number[];
  return {
    instance: d.instance,
    at: Date.parse(message.time) || Date.now(),
    eventsInPerS: eventsIn ?? 0,
    eventsProcessedPerS: processed ?? 0,
    queueDepth: depth ?? 0,
    queueCapacity: capacity ?? 0,
    connectedClients: clients ?? 0,
    deadLetters: num(d.dead_letters),
    openAlerts: counts(d.open_alerts_by_severity),
  };
}

export function metricsReducer(state: MetricsState, message: LiveMessage): MetricsState {
  const snapshot = snapshotOf(message);
  if (snapshot === null) return state;
  const byInstance = { ...state.byInstance, [snapshot.instance]: snapshot };
  const all = Object.values(byInstance);
  const sample = {
    t: snapshot.at,
    eventsIn: all.reduce((n, s) => n + s.eventsInPerS, 0),
    processed: all.reduce((n, s) => n + s.eventsProcessedPerS, 0),
  };
  return { byInstance, history: [...state.history, sample].slice(-HISTORY) };
}

export interface Totals {
  instances: number;
  eventsInPerS: number;
  eventsProcessedPerS: number;
  queueDepth: number;
  queueCapacity: number;
  connectedClients: number;
  deadLetters: number | null;
  openAlerts: Record<string, number> | null;
}

/** Every instance's figures added up; dead letters and open alerts are global, so the newest. */
export function totals(state: MetricsState): Totals | null {
  const all = Object.values(state.byInstance).sort((a, b) => a.at - b.at);
  const newest = all.at(-1);
  if (newest === undefined) return null;
  const sum = (f: (s: Snapshot) => number) => all.reduce((n, s) => n + f(s), 0);
  return {
    instances: all.length,
    eventsInPerS: sum((s) => s.eventsInPerS),
    eventsProcessedPerS: sum((s) => s.eventsProcessedPerS),
    queueDepth: sum((s) => s.queueDepth),
    queueCapacity: sum((s) => s.queueCapacity),
    connectedClients: sum((s) => s.connectedClients),
    deadLetters: newest.deadLetters,
    openAlerts: newest.openAlerts,
  };
}
