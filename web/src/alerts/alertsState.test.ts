import { describe, expect, it } from "vitest";

import type { Alert } from "../api/types";
import type { LiveMessage } from "../live/socket";
import {
  activeAlerts,
  alertFromMessage,
  alertsOfPatient,
  alertsReducer,
  type AlertsState,
  initialAlerts,
  resolvedAlerts,
  unacknowledgedCritical,
  waitingCount,
} from "./alertsState";

function alert(overrides: Partial<Alert> = {}): Alert {
  return {
    id: "a1",
    patient_id: "p1",
    ward: "ICU",
    severity: "critical",
    status: "open",
    score: 9,
    risk: "high",
    peak_score: 9,
    readings: 1,
    opened_at: "2026-11-25T09:00:00Z",
    updated_at: "2026-11-25T09:00:00Z",
    acknowledged_by: null,
    acknowledged_at: null,
    resolved_at: null,
    version: 1,
    ...overrides,
  };
}

function message(type: string, data: Alert, seq = 1): LiveMessage {
  return { seq, type, topic: "alerts", time: data.updated_at, data: { ...data, change: "x" } };
}

function loaded(alerts: Alert[], state: AlertsState = initialAlerts): AlertsState {
  const started = alertsReducer(state, { kind: "reloadStarted" });
  return alertsReducer(started, { kind: "loaded", alerts, generation: started.generation });
}

describe("alerts state", () => {
  it("adds a raised alert and takes later versions of it", () => {
    let state = loaded([]);
    state = alertsReducer(state, { kind: "live", message: message("AlertRaised", alert()) });
    expect(activeAlerts(state).map((a) => a.id)).toEqual(["a1"]);
    const acked = alert({ status: "acknowledged", acknowledged_by: "dr.osei", version: 3 });
    state = alertsReducer(state, { kind: "live", message: message("AlertUpdated", acked, 2) });
    expect(state.alerts.a1?.acknowledged_by).toBe("dr.osei");
    expect(unacknowledgedCritical(state)).toEqual([]);
  });

  it("keeps the newer version whichever arrives first", () => {
    const acked = alert({ status: "acknowledged", acknowledged_by: "dr.osei", version: 2 });
    let state = loaded([acked]);
    state = alertsReducer(state, { kind: "live", message: message("AlertRaised", alert()) });
    expect(state.alerts.a1?.status).toBe("acknowledged");
    state = alertsReducer(state, { kind: "saved", alert: alert({ version: 1 }) });
    expect(state.alerts.a1?.version).toBe(2);
  });

  it("does not let a reload that began earlier undo a live change", () => {
    let state = alertsReducer(loaded([]), { kind: "reloadStarted" });
    const generation = state.generation;
    state = alertsReducer(state, { kind: "live", message: message("AlertRaised", alert()) });
    // the page was read before the alert was raised: it does not list it
    state = alertsReducer(state, { kind: "loaded", alerts: [], generation });
    expect(Object.keys(state.alerts)).toEqual(["a1"]);
  });

  it("drops on reload what the server no longer lists and nobody touched since", () => {
    let state = loaded([alert()]);
    state = loaded([alert({ id: "a2" })], state);
    expect(Object.keys(state.alerts)).toEqual(["a2"]);
  });

  it("ignores other and malformed messages", () => {
    const state = loaded([]);
    const broken: LiveMessage[] = [
      { seq: 1, type: "PatientCreated", time: "", data: { ...alert() } },
      { seq: 2, type: "AlertRaised", time: "", data: { ...alert(), severity: "mild" } },
      { seq: 3, type: "AlertRaised", time: "", data: { ...alert(), version: "2" } },
      { seq: 4, type: "AlertRaised", time: "", data: { id: "a1" } },
    ];
    for (const m of broken) {
      expect(alertsReducer(state, { kind: "live", message: m })).toBe(state);
      expect(alertFromMessage(m)).toBeNull();
    }
  });

  it("sorts active alerts by severity, then the longest waiting first", () => {
    const state = loaded([
      alert({ id: "urgent-old", severity: "urgent", opened_at: "2026-11-25T08:00:00Z" }),
      alert({ id: "critical-new", opened_at: "2026-11-25T09:30:00Z" }),
      alert({ id: "critical-old", opened_at: "2026-11-25T09:00:00Z", status: "acknowledged" }),
      alert({ id: "done", status: "resolved", resolved_at: "2026-11-25T10:00:00Z" }),
    ]);
    expect(activeAlerts(state).map((a) => a.id)).toEqual([
      "critical-old",
      "critical-new",
      "urgent-old",
    ]);
    expect(unacknowledgedCritical(state).map((a) => a.id)).toEqual(["critical-new"]);
    expect(waitingCount(state)).toBe(2);
    expect(resolvedAlerts(state).map((a) => a.id)).toEqual(["done"]);
  });

  it("lists resolved alerts most recently resolved first, up to a limit", () => {
    const state = loaded([
      alert({ id: "r1", status: "resolved", resolved_at: "2026-11-25T10:00:00Z" }),
      alert({ id: "r2", status: "resolved", resolved_at: "2026-11-25T11:00:00Z" }),
      alert({ id: "r3", status: "resolved", resolved_at: "2026-11-25T09:00:00Z" }),
    ]);
    expect(resolvedAlerts(state, 2).map((a) => a.id)).toEqual(["r2", "r1"]);
  });

  it("gives a patient's alerts from live state and history, newest version of each", () => {
    const state = loaded([alert({ id: "now", version: 4 }), alert({ id: "other", patient_id: "p2" })]);
    const history = [
      alert({ id: "now", version: 2 }),
      alert({ id: "past", status: "resolved", opened_at: "2026-11-24T09:00:00Z" }),
      alert({ id: "older", status: "resolved", opened_at: "2026-11-23T09:00:00Z" }),
    ];
    const mine = alertsOfPatient(state, "p1", history);
    expect(mine.map((a) => [a.id, a.version])).toEqual([
      ["now", 4],
      ["past", 1],
      ["older", 1],
    ]);
  });
});
