import { describe, expect, it } from "vitest";

import type { LiveMessage } from "../live/socket";
import { HISTORY, initialMetrics, metricsReducer, snapshotOf, totals } from "./metricsState";

function metrics(instance: string, at: number, extra: Record<string, unknown> = {}): LiveMessage {
  return {
    seq: at,
    topic: "metrics",
    type: "MetricsUpdated",
    time: new Date(Date.UTC(2026, 10, 25, 9, 0, at)).toISOString(),
    data: {
      instance,
      events_in_per_s: 10,
      events_processed_per_s: 8,
      worker_queue: { depth: 3, capacity: 1000 },
      open_alerts_by_severity: { urgent: 1, critical: at },
      patients_by_status: null,
      connected_clients: 2,
      dead_letters: at,
      ...extra,
    },
  };
}

describe("operations metrics", () => {
  it("adds up the instances and takes the global figures from the newest", () => {
    let state = metricsReducer(initialMetrics, metrics("a:1", 1));
    state = metricsReducer(state, metrics("b:2", 2, { worker_queue: { depth: 7, capacity: 500 } }));
    expect(totals(state)).toEqual({
      instances: 2,
      eventsInPerS: 20,
      eventsProcessedPerS: 16,
      queueDepth: 10,
      queueCapacity: 1500,
      connectedClients: 4,
      deadLetters: 2,
      openAlerts: { urgent: 1, critical: 2 },
    });
    expect(state.history.map((s) => s.eventsIn)).toEqual([10, 20]);
  });

  it("keeps a bounded history", () => {
    let state = initialMetrics;
    for (let i = 0; i < HISTORY + 10; i++) state = metricsReducer(state, metrics("a:1", i % 60));
    expect(state.history).toHaveLength(HISTORY);
  });

  it("shows figures the server could not tell as unknown", () => {
    const snapshot = snapshotOf(metrics("a:1", 1, { dead_letters: null, open_alerts_by_severity: null }));
    expect(snapshot?.deadLetters).toBeNull();
    expect(snapshot?.openAlerts).toBeNull();
  });

  it("ignores other and malformed messages", () => {
    expect(totals(initialMetrics)).toBeNull();
    for (const broken of [
      { ...metrics("a:1", 1), type: "EventProcessed" },
      metrics("a:1", 1, { worker_queue: null }),
      metrics("a:1", 1, { events_in_per_s: "fast" }),
      metrics("a:1", 1, { instance: 3 }),
    ]) {
      expect(metricsReducer(initialMetrics, broken)).toBe(initialMetrics);
    }
  });
});
