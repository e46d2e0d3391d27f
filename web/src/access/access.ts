/**
 * What the signed-in user may do in the dashboard, from the one list the server gives:
 * `permissions` of GET /api/auth/session, every "METHOD /path" the caller's roles may call,
 * read from the server's permission table (security/rbac.py). The dashboard keeps no copy of
 * that table and names no role: each feature below lists the API operations it uses, and a
 * feature is offered when the server allows every one of them.
 */
import type { paths } from "../api/schema";

type Method = "get" | "put" | "post" | "delete" | "patch";

/** "METHOD /path" of every HTTP operation in the API schema (a typo is a type error). */
type HttpOperation = {
  [P in keyof paths]: {
    [M in Method]: paths[P][M] extends undefined ? never : `${Uppercase<M>} ${P & string}`;
  }[Method];
}[keyof paths];

/** An operation as the session lists it; the live socket is not in the OpenAPI schema. */
export type Operation = HttpOperation | "GET /ws";

/** Each feature of the dashboard and every API operation it needs. */
export const FEATURES = {
  // the board reads every page, then fetches by id the patients it first sees live
  board: ["GET /api/patients", "GET /api/news2", "GET /api/patients/{patient_id}"],
  patient: [
    "GET /api/patients/{patient_id}",
    "GET /api/patients/{patient_id}/events",
    "GET /api/patients/{patient_id}/vitals",
    "GET /api/patients/{patient_id}/news2",
  ],
  register: ["POST /api/patients"],
  changeStatus: ["PUT /api/patients/{patient_id}/status"],
  alerts: ["GET /api/alerts"],
  acknowledge: ["POST /api/alerts/{alert_id}/ack"],
  analytics: ["GET /api/analytics/dashboard"],
  live: ["GET /ws"],
  // its figures come only live (`MetricsUpdated`); readiness alone is public
  operations: ["GET /ws"],
} as const satisfies Record<string, readonly Operation[]>;

export type Feature = keyof typeof FEATURES;

/** What a refusal says the user cannot do ("… is not permitted for your role"). */
export const FEATURE_TEXT: Record<Feature, string> = {
  board: "The ward board",
  patient: "Opening a patient",
  register: "Registering patients",
  changeStatus: "Changing a patient's status",
  alerts: "The alerts list",
  acknowledge: "Acknowledging alerts",
  analytics: "The analytics dashboard",
  live: "Live updates",
  operations: "The operations view",
};

/** The dashboard's views in navigation order; the first one a user may open is their home. */
export const VIEWS = [
  { path: "/", feature: "board", label: "Ward board" },
  { path: "/patients/new", feature: "register", label: "Register" },
  { path: "/alerts", feature: "alerts", label: "Alerts" },
  { path: "/analytics", feature: "analytics", label: "Analytics" },
  { path: "/operations", feature: "operations", label: "Operations" },
] as const satisfies readonly { path: string; feature: Feature; label: string }[];

export type View = (typeof VIEWS)[number];

/** The signed-in user's reach, as the dashboard uses it. */
export interface Access {
  roles: readonly string[];
  may: (feature: Feature) => boolean;
  /** The views this user may open, in navigation order. */
  views: readonly View[];
  /** Where to land: the first view this user may open, or null when there is none. */
  home: string | null;
}

/** The reach of a session: `permissions` and `roles` as GET /api/auth/session answers them. */
export function accessFrom(session: {
  roles: readonly string[];
  permissions: readonly string[];
}): Access {
  const allowed = new Set(session.permissions);
  const may = (feature: Feature) => FEATURES[feature].every((op) => allowed.has(op));
  const views = VIEWS.filter((v) => may(v.feature));
  return { roles: session.roles, may, views, home: views[0]?.path ?? null };
}
