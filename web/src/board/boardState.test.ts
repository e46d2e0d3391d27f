import { describe, expect, it } from "vitest";

import type { Patient } from "../api/types";
import type { LiveMessage } from "../live/socket";
import {
  type BoardState,
  boardReducer,
  defaultFilter,
  groupByWard,
  initialBoard,
  MAX_WARD_TOPICS,
  missingPeople,
  wardNames,
  wardTopics,
} from "./boardState";

function patient(overrides: Partial<Patient> = {}): Patient {
  return {
    id: "p1",
    mrn: "MRN-1",
    given_name: "Ada",
    family_name: "Lovelace",
    birth_date: "1980-12-10",
    sex: "female",
    ward: "ICU",
    bed: "3",
    status: "registered",
    version: 1,
    created_at: "2026-11-25T09:00:00Z",
    updated_at: "2026-11-25T09:00:00Z",
    status_since: "2026-11-25T09:00:00Z",
    ...overrides,
  };
}

function live(type: string, data: Record<string, unknown>, time = "2026-11-25T10:00:00Z"): LiveMessage {
  return { seq: 1, type, time, data };
}

function loaded(state: BoardState, patients: Patient[], generation = state.generation): BoardState {
  return boardReducer(state, { kind: "loaded", patients, complete: true, generation });
}

describe("boardReducer", () => {
  it("loads patients with their names", () => {
    const state = loaded(initialBoard, [patient()]);
    expect(state.loaded).toBe(true);
    expect(state.entries.p1?.person?.family_name).toBe("Lovelace");
  });

  it("adds a patient from PatientCreated without a name, to be fetched", () => {
    const state = boardReducer(
      loaded(initialBoard, []),
      { kind: "live", message: live("PatientCreated", { patient_id: "p2", ward: "A&E", bed: null, status: "registered", version: 1 }) },
    );
    expect(state.entries.p2?.status).toBe("registered");
    expect(missingPeople(state)).toEqual(["p2"]);
  });

  it("moves a patient on PatientStatusUpdated and restarts its time in status", () => {
    const state = boardReducer(loaded(initialBoard, [patient()]), {
      kind: "live",
      message: live("PatientStatusUpdated", { patient_id: "p1", ward: "ICU", bed: "3", status: "in_treatment", version: 2 }),
    });
    expect(state.entries.p1?.status).toBe("in_treatment");
    expect(state.entries.p1?.status_since).toBe("2026-11-25T10:00:00Z");
    expect(state.entries.p1?.person?.given_name).toBe("Ada");
  });

  it("moves a patient to critical on PatientCritical", () => {
    const state = boardReducer(loaded(initialBoard, [patient()]), {
      kind: "live",
      message: live("PatientCritical", { patient_id: "p1", ward: "ICU", bed: "3", status: "critical", version: 2 }),
    });
    expect(state.entries.p1?.status).toBe("critical");
  });

  it("ignores a live message older than what it holds", () => {
    const start = loaded(initialBoard, [patient({ status: "admitted", version: 3 })]);
    const state = boardReducer(start, {
      kind: "live",
      message: live("PatientStatusUpdated", { patient_id: "p1", ward: "ICU", status: "waiting", version: 2 }),
    });
    expect(state).toBe(start);
  });

  it("ignores messages that are not about patients or are malformed", () => {
    const start = loaded(initialBoard, [patient()]);
    expect(boardReducer(start, { kind: "live", message: live("EventProcessed", { patient_id: "p1" }) })).toBe(start);
    expect(boardReducer(start, { kind: "live", message: live("PatientCreated", { ward: "ICU" }) })).toBe(start);
  });

  it("keeps a newer live change over an older page that arrives later", () => {
    let state = boardReducer(initialBoard, { kind: "reloadStarted" });
    const generation = state.generation;
    state = boardReducer(state, {
      kind: "live",
      message: live("PatientStatusUpdated", { patient_id: "p1", ward: "ICU", status: "admitted", version: 2 }),
    });
    state = loaded(state, [patient({ version: 1 })], generation);
    expect(state.entries.p1?.status).toBe("admitted");
    expect(state.entries.p1?.person?.given_name).toBe("Ada");
  });

  it("on reload drops patients the server no longer lists, but not ones created meanwhile", () => {
    let state = loaded(initialBoard, [patient({ id: "gone" })]);
    state = boardReducer(state, { kind: "reloadStarted" });
    const generation = state.generation;
    state = boardReducer(state, {
      kind: "live",
      message: live("PatientCreated", { patient_id: "new", ward: "ICU", status: "registered", version: 1 }),
    });
    state = loaded(state, [patient({ id: "p1" })], generation);
    expect(Object.keys(state.entries).sort()).toEqual(["new", "p1"]);
  });

  it("fills in a fetched patient's name and takes its newer state", () => {
    let state = boardReducer(loaded(initialBoard, []), {
      kind: "live",
      message: live("PatientCreated", { patient_id: "p1", ward: "ICU", status: "registered", version: 1 }),
    });
    state = boardReducer(state, { kind: "details", patient: patient({ status: "waiting", version: 2 }) });
    expect(state.entries.p1?.status).toBe("waiting");
    expect(missingPeople(state)).toEqual([]);
  });

  it("keeps the live state when the fetched details are older, but takes the name", () => {
    let state = boardReducer(loaded(initialBoard, []), {
      kind: "live",
      message: live("PatientCritical", { patient_id: "p1", ward: "ICU", status: "critical", version: 2 }),
    });
    state = boardReducer(state, { kind: "details", patient: patient({ version: 1 }) });
    expect(state.entries.p1?.status).toBe("critical");
    expect(state.entries.p1?.person?.mrn).toBe("MRN-1");
  });
});

describe("groupByWard", () => {
  const state = loaded(initialBoard, [
    patient({ id: "a", ward: "ICU", bed: "10", family_name: "Zed" }),
    patient({ id: "b", ward: "ICU", bed: "2", family_name: "Young", mrn: "X-77" }),
    patient({ id: "c", ward: "A&E", bed: null, status: "waiting", given_name: "Grace", family_name: "Hopper" }),
    patient({ id: "d", ward: "A&E", status: "discharged" }),
  ]);

  it("groups by ward in name order, beds in numeric order, discharged hidden", () => {
    const groups = groupByWard(state, defaultFilter);
    expect(groups.map((g) => [g.ward, g.patients.map((p) => p.id)])).toEqual([
      ["A&E", ["c"]],
      ["ICU", ["b", "a"]],
    ]);
  });

  it("filters by ward and by status", () => {
    expect(groupByWard(state, { ...defaultFilter, ward: "ICU" }).map((g) => g.ward)).toEqual(["ICU"]);
    const waiting = groupByWard(state, { ...defaultFilter, status: "waiting" });
    expect(waiting.flatMap((g) => g.patients.map((p) => p.id))).toEqual(["c"]);
    const all = groupByWard(state, { ...defaultFilter, status: "all" });
    expect(all.flatMap((g) => g.patients).length).toBe(4);
  });

  it("searches by name in either order and by MRN, ignoring case", () => {
    const ids = (search: string) =>
      groupByWard(state, { ...defaultFilter, search }).flatMap((g) => g.patients.map((p) => p.id));
    expect(ids("grace hop")).toEqual(["c"]);
    expect(ids("HOPPER grace")).toEqual(["c"]);
    expect(ids("x-77")).toEqual(["b"]);
    expect(ids("nobody")).toEqual([]);
  });

  it("lists the wards of every loaded patient", () => {
    expect(wardNames(state)).toEqual(["A&E", "ICU"]);
  });
});

describe("the NEWS2 column", () => {
  const score = (total: number, at: string, risk: "low" | "high" = "low") => ({
    patient_id: "p1",
    ward: "ICU",
    total,
    risk,
    sub_scores: {},
    carried_forward: [],
    missing: [],
    assessed_at: at,
    spo2_scale: 1,
  });
  const vitals = (total: number, at: string, extra: Record<string, unknown> = {}) =>
    live("VitalsUpdated", {
      patient_id: "p1",
      device_id: "mon-1",
      reading: { ts: at },
      news2: { total, risk: "high", assessed_at: at, sub_scores: {} },
      ...extra,
    });

  it("takes the loaded scores, then newer ones from VitalsUpdated", () => {
    let state = boardReducer(loaded(initialBoard, [patient()]), {
      kind: "news2",
      items: [score(1, "2026-11-25T09:00:00Z")],
    });
    expect(state.news2.p1).toEqual({ total: 1, risk: "low", assessed_at: "2026-11-25T09:00:00Z" });
    state = boardReducer(state, { kind: "live", message: vitals(8, "2026-11-25T09:05:00Z") });
    expect(state.news2.p1?.total).toBe(8);
    // the patient's row itself is untouched by vitals
    expect(state.entries.p1?.version).toBe(1);
  });

  it("never goes back to an older score, whichever arrives last", () => {
    let state = boardReducer(initialBoard, { kind: "live", message: vitals(8, "2026-11-25T09:05:00Z") });
    state = boardReducer(state, { kind: "news2", items: [score(1, "2026-11-25T09:00:00Z")] });
    expect(state.news2.p1?.total).toBe(8);
  });

  it("keeps the scores across a reload of the patients", () => {
    let state = boardReducer(loaded(initialBoard, [patient()]), {
      kind: "news2",
      items: [score(1, "2026-11-25T09:00:00Z")],
    });
    state = loaded(boardReducer(state, { kind: "reloadStarted" }), [patient({ version: 2 })]);
    expect(state.news2.p1?.total).toBe(1);
  });

  it("ignores malformed vitals", () => {
    const state = loaded(initialBoard, [patient()]);
    for (const broken of [
      vitals(8, "2026-11-25T09:05:00Z", { news2: null }),
      vitals(8, "2026-11-25T09:05:00Z", { news2: { total: 8, risk: "dire", assessed_at: "x" } }),
      vitals(8, "2026-11-25T09:05:00Z", { patient_id: 7 }),
    ]) {
      expect(boardReducer(state, { kind: "live", message: broken })).toBe(state);
    }
  });

  it("subscribes to every ward shown, A&E too (encoded), up to a limit", () => {
    expect(wardTopics(["ICU", "A&E", "Ward 7", " "])).toEqual(["ward:ICU", "ward:A%26E", "ward:Ward 7"]);
    const many = Array.from({ length: MAX_WARD_TOPICS + 5 }, (_, i) => `W${String(i)}`);
    expect(wardTopics(many)).toHaveLength(MAX_WARD_TOPICS);
  });
});
