import type { components } from "./schema";

/** Types of the API, from the generated OpenAPI schema (src/api/schema.d.ts). */
export type Patient = components["schemas"]["PatientOut"];
export type PatientIn = components["schemas"]["PatientIn"];
export type PatientPage = components["schemas"]["PatientPage"];
export type Status = components["schemas"]["Status"];
export type Sex = components["schemas"]["Sex"];
export type Alert = components["schemas"]["AlertOut"];
export type AlertStatus = components["schemas"]["AlertStatus"];
export type Severity = components["schemas"]["Severity"];
export type Risk = components["schemas"]["Risk"];
export type News2 = components["schemas"]["News2Out"];
export type PatientNews2 = components["schemas"]["PatientNews2Out"];
export type Reading = components["schemas"]["VitalsOut"];
export type SignInConfig = components["schemas"]["SignInConfig"];
export type Session = components["schemas"]["SessionOut"];

// The statuses in the order of a stay; `satisfies` fails the build if the schema's enum changes.
export const STATUSES = [
  "registered",
  "waiting",
  "in_treatment",
  "admitted",
  "critical",
  "stable",
  "discharged",
] as const satisfies readonly Status[];

export const SEXES = ["female", "male", "other", "unknown"] as const satisfies readonly Sex[];
export const SEVERITIES = ["critical", "urgent"] as const satisfies readonly Severity[];
export const RISKS = ["low", "low_medium", "medium", "high"] as const satisfies readonly Risk[];

/*
 * The routes below answer untyped JSON in the schema (`dict[str, Any]` on the server), so their
 * shape is written out here by hand from patients/api.py and observability/health.py.
 */

/** One CloudEvent of a patient's history (GET /api/patients/{id}/events). */
export interface PatientEvent {
  id: string;
  type: string;
  time: string;
  subject?: string;
  data: {
    status?: Status;
    previous_status?: Status | null;
    reason?: string | null;
    source?: string | null;
    ward?: string;
    bed?: string | null;
    version?: number;
  };
}

/** GET /api/analytics/dashboard?days=N, with every status present in `patients_by_status`. */
export type DashboardSummary = Omit<components["schemas"]["Dashboard"], "patients_by_status"> & {
  patients_by_status: Record<Status, number>;
};
export type DayAlerts = components["schemas"]["DayAlerts"];

/** GET /health/ready (200 healthy/degraded, 503 unhealthy, same body). */
export interface Readiness {
  status: "healthy" | "degraded" | "unhealthy";
  checks: Record<string, Record<string, string | number | null>>;
}
