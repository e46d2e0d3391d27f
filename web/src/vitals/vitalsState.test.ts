import { describe, expect, it } from "vitest";

import type { News2, Reading } from "../api/types";
import type { LiveMessage } from "../live/socket";
import {
  breakdown,
  initialVitals,
  inWindow,
  liveReading,
  pointOf,
  thin,
  vitalsReducer,
} from "./vitalsState";

const T0 = Date.parse("2026-11-25T09:00:00Z");
const iso = (s: number) => new Date(T0 + s * 1000).toISOString();

function reading(second: number, values: Reading["values"] = { heart_rate: 70 + second }): Reading {
  return {
    reading_id: `r${String(second)}`,
    device_id: "mon-1",
    ts: iso(second),
    values,
    news2: { ...news2(second), total: second },
  };
}

function news2(second: number, overrides: Partial<News2> = {}): News2 {
  return {
    total: 3,
    risk: "low_medium",
    sub_scores: { resp_rate: 0, spo2: 3, air_or_oxygen: 0, heart_rate: 0 },
    carried_forward: ["heart_rate"],
    missing: ["systolic_bp", "consciousness", "temperature"],
    assessed_at: iso(second),
    spo2_scale: 1,
    ...overrides,
  };
}

function vitalsUpdated(second: number, patientId = "p1", extra: Record<string, unknown> = {}): LiveMessage {
  return {
    seq: second,
    type: "VitalsUpdated",
    topic: `patient:${patientId}`,
    time: iso(second),
    data: {
      patient_id: patientId,
      device_id: "mon-1",
      reading: { ts: iso(second), heart_rate: 100 + second, spo2_scale: 1 },
      news2: news2(second, { total: 7, risk: "high" }),
      ...extra,
    },
  };
}

describe("vitals state", () => {
  it("thins to the newest point of each slice, as the API's every does", () => {
    const points = [0, 1, 4, 5, 9, 12].map((s) => pointOf(reading(s)));
    expect(thin(points, 5).map((p) => (p.t - T0) / 1000)).toEqual([4, 9, 12]);
  });

  it("adds live readings to the chart, replacing the older one in the same slice", () => {
    let state = initialVitals("p1", 5);
    state = vitalsReducer(state, { kind: "series", readings: [reading(0), reading(1)], everyS: 5 });
    state = vitalsReducer(state, { kind: "live", message: vitalsUpdated(3) });
    state = vitalsReducer(state, { kind: "live", message: vitalsUpdated(6) });
    expect(state.series.map((p) => [(p.t - T0) / 1000, p.values.heart_rate])).toEqual([
      [3, 103],
      [6, 106],
    ]);
    expect(state.news2?.total).toBe(7);
    expect(state.recent).toHaveLength(2); // the chart load is thinned: not for the breakdown
  });

  it("counts a reading seen both live and in a load once", () => {
    let state = initialVitals("p1", 5);
    state = vitalsReducer(state, { kind: "live", message: vitalsUpdated(3) });
    state = vitalsReducer(state, { kind: "recent", readings: [reading(3)] });
    expect(state.recent).toHaveLength(1);
  });

  it("keeps live points newer than a load that was read before them", () => {
    let state = initialVitals("p1", 5);
    state = vitalsReducer(state, { kind: "live", message: vitalsUpdated(20) });
    state = vitalsReducer(state, { kind: "series", readings: [reading(0)], everyS: 5 });
    expect(state.series.map((p) => (p.t - T0) / 1000)).toEqual([0, 20]);
  });

  it("starts the series again when the window's slice size changes", () => {
    let state = initialVitals("p1", 5);
    state = vitalsReducer(state, { kind: "series", readings: [reading(0), reading(7)], everyS: 5 });
    state = vitalsReducer(state, { kind: "series", readings: [reading(7)], everyS: 120 });
    expect(state.everyS).toBe(120);
    expect(state.series.map((p) => (p.t - T0) / 1000)).toEqual([7]);
  });

  it("never lets an older NEWS2 replace a newer one", () => {
    let state = initialVitals("p1", 5);
    state = vitalsReducer(state, { kind: "live", message: vitalsUpdated(10) });
    state = vitalsReducer(state, { kind: "news2", news2: news2(5) });
    expect(state.news2?.assessed_at).toBe(iso(10));
    expect(state.hasReadings).toBe(true);
  });

  it("ignores other patients' and malformed messages", () => {
    const state = initialVitals("p1", 5);
    const others: LiveMessage[] = [
      vitalsUpdated(1, "p2"),
      { ...vitalsUpdated(1), type: "AlertRaised" },
      vitalsUpdated(1, "p1", { reading: { ts: "not a time" } }),
      vitalsUpdated(1, "p1", { reading: null }),
    ];
    for (const m of others) expect(vitalsReducer(state, { kind: "live", message: m })).toBe(state);
    const noScore = liveReading(vitalsUpdated(1, "p1", { news2: { total: "7" } }), "p1");
    expect(noScore?.news2).toBeNull();
    expect(noScore?.point.news2).toBeNull();
  });

  it("keeps the points of the window only", () => {
    const points = [0, 30, 60].map((s) => pointOf(reading(s)));
    expect(inWindow(points, T0 + 60_000, 45_000).map((p) => (p.t - T0) / 1000)).toEqual([30, 60]);
  });
});

describe("NEWS2 breakdown", () => {
  it("lists every parameter with its score, basis and the value scored", () => {
    const recent = [
      pointOf(reading(0, { heart_rate: 72, resp_rate: 30 })),
      pointOf(reading(5, { spo2: 90, on_oxygen: false, resp_rate: 16 })),
      pointOf(reading(9, { heart_rate: 140 })), // after the assessment: not what was scored
    ];
    const rows = breakdown(news2(5), recent.map((p) => p));
    expect(rows.map((r) => [r.key, r.score, r.basis, r.value])).toEqual([
      ["resp_rate", 0, "measured", "16 /min"],
      ["spo2", 3, "measured", "90 %"],
      ["air_or_oxygen", 0, "measured", "Air"],
      ["systolic_bp", null, "missing", null],
      ["heart_rate", 0, "carried forward", "72 /min"],
      ["consciousness", null, "missing", null],
      ["temperature", null, "missing", null],
    ]);
    expect(rows[1]?.label).toBe("SpO₂ (scale 1)");
  });

  it("names consciousness levels and scale 2 in words", () => {
    const scored = news2(0, {
      sub_scores: { consciousness: 3, spo2: 0 },
      carried_forward: [],
      missing: [],
      spo2_scale: 2,
    });
    const rows = breakdown(scored, [pointOf(reading(0, { consciousness: "V", spo2: 90 }))]);
    expect(rows.find((r) => r.key === "consciousness")?.value).toBe("Responds to voice");
    expect(rows.find((r) => r.key === "spo2")?.label).toBe("SpO₂ (scale 2)");
    // not in the recent readings: the score stands, the value is unknown here
    expect(rows.find((r) => r.key === "temperature")).toMatchObject({ basis: "measured", value: null });
  });
});
