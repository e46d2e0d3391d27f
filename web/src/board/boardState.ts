/**
 * The ward board's state: every loaded patient by id, merged from HTTP pages and live messages.
 * A patient's `version` only grows, so the newer of two views always wins, whichever came first.
 */
import type { Patient, PatientNews2, Risk, Status } from "../api/types";
import type { LiveMessage } from "../live/socket";
import { wardTopic } from "../live/topics";

export const PATIENT_MESSAGES = ["PatientCreated", "PatientStatusUpdated", "PatientCritical"];

/** Who the patient is: only HTTP has it (live messages are de-identified). */
export interface Person {
  given_name: string;
  family_name: string;
  mrn: string;
  birth_date: string;
  sex: Patient["sex"];
}

export interface BoardEntry {
  id: string;
  ward: string;
  bed: string | null;
  status: Status;
  version: number;
  status_since: string;
  person: Person | null;
  /** The `generation` of the last live change; a reload started before it must not drop it. */
  touched: number;
}

/** A patient's latest NEWS2 as the board shows it. */
export interface BoardNews2 {
  total: number;
  risk: Risk;
  assessed_at: string;
}

export interface BoardState {
  entries: Record<string, BoardEntry>;
  /** Latest NEWS2 by patient id: from `GET /api/news2`, then `VitalsUpdated` (ward topics). */
  news2: Record<string, BoardNews2>;
  generation: number;
  loaded: boolean;
  complete: boolean;
}

export type BoardAction =
  | { kind: "reloadStarted" }
  | { kind: "loaded"; patients: Patient[]; complete: boolean; generation: number }
  | { kind: "live"; message: LiveMessage }
  | { kind: "details"; patient: Patient }
  | { kind: "news2"; items: PatientNews2[] };

export const initialBoard: BoardState = {
  entries: {},
  news2: {},
  generation: 0,
  loaded: false,
  complete: true,
};

const RISKS: readonly Risk[] = ["low", "low_medium", "medium", "high"];

/** The NEWS2 a `VitalsUpdated` carries (vitals/monitor.py), or null when malformed. */
export function news2FromMessage(message: LiveMessage): { patientId: string; news2: BoardNews2 } | null {
  if (message.type !== "VitalsUpdated") return null;
  const patientId = message.data.patient_id;
  const raw: unknown = message.data.news2;
  if (typeof patientId !== "string" || typeof raw !== "object" || raw === null) return null;
  const { total, risk, assessed_at } = raw as Record<string, unknown>;
  if (typeof total !== "number" || typeof assessed_at !== "string") return null;
  if (!RISKS.includes(risk as Risk)) return null;
  return { patientId, news2: { total, risk: risk as Risk, assessed_at } };
}

/** The map with this score, unless it already holds a later one (scores never go back in time). */
function withNews2(
  map: Record<string, BoardNews2>,
  patientId: string,
  next: BoardNews2,
): Record<string, BoardNews2> {
  const current = map[patientId];
  if (current !== undefined && Date.parse(current.assessed_at) > Date.parse(next.assessed_at)) {
    return map;
  }
  return { ...map, [patientId]: next };
}

function fromPatient(patient: Patient, touched: number): BoardEntry {
  return {
    id: patient.id,
    ward: patient.ward,
    bed: patient.bed,
    status: patient.status,
    version: patient.version,
    status_since: patient.status_since,
    person: {
      given_name: patient.given_name,
      family_name: patient.family_name,
      mrn: patient.mrn,
      birth_date: patient.birth_date,
      sex: patient.sex,
    },
    touched,
  };
}

function newer(entry: BoardEntry | undefined, version: number): boolean {
  return entry === undefined || version > entry.version;
}

/** The snapshot a patient live message carries (see patients/events.py), or null if malformed. */
export function patientSnapshot(message: LiveMessage): {
  id: string;
  ward: string;
  bed: string | null;
  status: Status;
  version: number;
} | null {
  if (!PATIENT_MESSAGES.includes(message.type)) return null;
  const { patient_id, ward, bed, status, version } = message.data;
  if (typeof patient_id !== "string" || typeof ward !== "string") return null;
  if (typeof status !== "string" || typeof version !== "number") return null;
  return {
    id: patient_id,
    ward,
    bed: typeof bed === "string" ? bed : null,
    status: status as Status,
    version,
  };
}

export function boardReducer(state: BoardState, action: BoardAction): BoardState {
  switch (action.kind) {
    case "reloadStarted":
      return { ...state, generation: state.generation + 1 };
    case "loaded": {
      const entries: Record<string, BoardEntry> = {};
      // kept: patients a live message touched after this reload began (the page may predate them)
      for (const entry of Object.values(state.entries)) {
        if (entry.touched >= action.generation) entries[entry.id] = entry;
      }
      for (const patient of action.patients) {
        const kept = entries[patient.id];
        if (newer(kept, patient.version)) entries[patient.id] = fromPatient(patient, 0);
        else if (kept && kept.person === null) {
          entries[patient.id] = { ...kept, person: fromPatient(patient, 0).person };
        }
      }
      return { ...state, entries, loaded: true, complete: action.complete };
    }
    case "news2": {
      let news2 = state.news2;
      for (const item of action.items) {
        news2 = withNews2(news2, item.patient_id, {
          total: item.total,
          risk: item.risk,
          assessed_at: item.assessed_at,
        });
      }
      return news2 === state.news2 ? state : { ...state, news2 };
    }
    case "live": {
      const scored = news2FromMessage(action.message);
      if (scored !== null) {
        const news2 = withNews2(state.news2, scored.patientId, scored.news2);
        return news2 === state.news2 ? state : { ...state, news2 };
      }
      const snapshot = patientSnapshot(action.message);
      if (snapshot === null) return state;
      const current = state.entries[snapshot.id];
      if (!newer(current, snapshot.version)) return state;
      const entry: BoardEntry = {
        ...snapshot,
        status_since:
          current?.status === snapshot.status ? current.status_since : action.message.time,
        person: current?.person ?? null,
        touched: state.generation,
      };
      return { ...state, entries: { ...state.entries, [snapshot.id]: entry } };
    }
    case "details": {
      const current = state.entries[action.patient.id];
      if (newer(current, action.patient.version)) {
        const entry = fromPatient(action.patient, current?.touched ?? state.generation);
        return { ...state, entries: { ...state.entries, [entry.id]: entry } };
      }
      if (current && current.person === null) {
        const person = fromPatient(action.patient, 0).person;
        return { ...state, entries: { ...state.entries, [current.id]: { ...current, person } } };
      }
      return state;
    }
  }
}

/** Patients whose names are not known yet: fetched by id after a live message. */
export function missingPeople(state: BoardState): string[] {
  return Object.values(state.entries)
    .filter((e) => e.person === null)
    .map((e) => e.id);
}

export interface BoardFilter {
  ward: string;
  /** A status, "active" (all but discharged) or "all". */
  status: Status | "active" | "all";
  search: string;
}

export const defaultFilter: BoardFilter = { ward: "", status: "active", search: "" };

export function matches(entry: BoardEntry, filter: BoardFilter): boolean {
  if (filter.ward && entry.ward !== filter.ward) return false;
  if (filter.status === "active" && entry.status === "discharged") return false;
  if (filter.status !== "active" && filter.status !== "all" && entry.status !== filter.status) {
    return false;
  }
  const needle = filter.search.trim().toLowerCase();
  if (!needle) return true;
  const person = entry.person;
  if (person === null) return false;
  const name = `${person.given_name} ${person.family_name}`.toLowerCase();
  const reversed = `${person.family_name} ${person.given_name}`.toLowerCase();
  return (
    name.includes(needle) || reversed.includes(needle) || person.mrn.toLowerCase().includes(needle)
  );
}

function byBed(a: BoardEntry, b: BoardEntry): number {
  const beds = (a.bed ?? "\uffff").localeCompare(b.bed ?? "\uffff", undefined, { numeric: true });
  if (beds !== 0) return beds;
  return (a.person?.family_name ?? "").localeCompare(b.person?.family_name ?? "");
}

/** The visible board: wards in name order, patients by bed then family name. */
export function groupByWard(
  state: BoardState,
  filter: BoardFilter,
): { ward: string; patients: BoardEntry[] }[] {
  const wards = new Map<string, BoardEntry[]>();
  for (const entry of Object.values(state.entries)) {
    if (!matches(entry, filter)) continue;
    const list = wards.get(entry.ward) ?? [];
    list.push(entry);
    wards.set(entry.ward, list);
  }
  return [...wards.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([ward, patients]) => ({ ward, patients: patients.sort(byBed) }));
}

// The server takes 256 topics per connection; leave room for the other views' topics.
export const MAX_WARD_TOPICS = 200;

/** `ward:{name}` topics for the wards shown (their `VitalsUpdated` keep the NEWS2 column live). */
export function wardTopics(wards: string[]): string[] {
  return wards
    .map(wardTopic)
    .filter((t): t is string => t !== null)
    .slice(0, MAX_WARD_TOPICS);
}

/** Every ward any loaded patient is on, for the filter and the registration form. */
export function wardNames(state: BoardState): string[] {
  return [...new Set(Object.values(state.entries).map((e) => e.ward))].sort();
}
