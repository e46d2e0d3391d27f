import createClient, { type Middleware } from "openapi-fetch";

import { authHeaders, reportUnauthorized } from "./auth";
import { ApiError, toApiError } from "./problem";
import type { paths } from "./schema";
import type { TokenCheck } from "./session";
import type {
  Alert,
  AlertStatus,
  DashboardSummary,
  News2,
  Patient,
  PatientEvent,
  PatientIn,
  PatientNews2,
  Readiness,
  Reading,
  Session,
  SignInConfig,
  Status,
} from "./types";

const withAuth: Middleware = {
  onRequest({ request }) {
    for (const [name, value] of Object.entries(authHeaders())) request.headers.set(name, value);
    return request;
  },
  onResponse({ request, response }) {
    // expired or withdrawn: the session watch renews the token or sends the user to sign-in
    if (response.status === 401) reportUnauthorized(request.headers.get("Authorization"));
    return response;
  },
};

/** The typed client: paths, parameters and bodies are checked against the OpenAPI schema. */
export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(withAuth);

async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok || data === undefined) throw toApiError(error, response);
  return data;
}

export function getPatient(id: string): Promise<Patient> {
  return unwrap(api.GET("/api/patients/{patient_id}", { params: { path: { patient_id: id } } }));
}

export function registerPatient(body: PatientIn): Promise<Patient> {
  return unwrap(api.POST("/api/patients", { body }));
}

export function changeStatus(id: string, status: Status, reason: string | null): Promise<Patient> {
  return unwrap(
    api.PUT("/api/patients/{patient_id}/status", {
      params: { path: { patient_id: id } },
      body: { status, reason },
    }),
  );
}

export async function getHistory(id: string): Promise<PatientEvent[]> {
  const page = await unwrap(
    api.GET("/api/patients/{patient_id}/events", { params: { path: { patient_id: id } } }),
  );
  return page.items as unknown as PatientEvent[];
}

/**
 * Every patient (or every patient of one ward), page by page, up to `maxPages` pages of 500 (the
 * board filters client-side). A nurse limited to a ward must name it: the server refuses her the
 * unfiltered list.
 */
export async function listAllPatients(
  ward: string | null,
  maxPages = 20,
): Promise<{ items: Patient[]; complete: boolean }> {
  const items: Patient[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < maxPages; page++) {
    const result = await unwrap(
      api.GET("/api/patients", { params: { query: { limit: 500, cursor, ...(ward ? { ward } : {}) } } }),
    );
    items.push(...result.items);
    if (!result.next_cursor) return { items, complete: true };
    cursor = result.next_cursor;
  }
  return { items, complete: false };
}

export async function getDashboard(days: number): Promise<DashboardSummary> {
  const data = await unwrap(api.GET("/api/analytics/dashboard", { params: { query: { days } } }));
  // the schema types the statuses as any string; every status is there (analytics/store.py)
  return data as DashboardSummary;
}

/** Readiness answers 503 with the same body when unhealthy: that is data here, not an error. */
export async function getReadiness(): Promise<Readiness> {
  const response = await fetch("/health/ready", { headers: authHeaders() });
  const body: unknown = await response.json().catch(() => null);
  if (body && typeof body === "object" && "status" in body && "checks" in body) {
    return body as Readiness;
  }
  throw toApiError(body, response);
}

/** Alerts, newest first; `ward` is required for a nurse limited to one (null: every ward). */
export async function listAlerts(
  ward: string | null,
  query: { status?: AlertStatus; patient_id?: string; limit: number },
): Promise<Alert[]> {
  const page = await unwrap(
    api.GET("/api/alerts", { params: { query: { ...query, ...(ward ? { ward } : {}) } } }),
  );
  return page.items;
}

export function acknowledgeAlert(id: string, by: string): Promise<Alert> {
  return unwrap(
    api.POST("/api/alerts/{alert_id}/ack", { params: { path: { alert_id: id } }, body: { by } }),
  );
}

/** Readings oldest first: from `since` on, or the newest `limit`; `every` thins to one per slice. */
export async function getVitals(
  id: string,
  query: { since?: string; limit: number; every?: number },
): Promise<Reading[]> {
  const page = await unwrap(
    api.GET("/api/patients/{patient_id}/vitals", {
      params: { path: { patient_id: id }, query },
    }),
  );
  return page.items;
}

export function getNews2(id: string): Promise<News2> {
  return unwrap(api.GET("/api/patients/{patient_id}/news2", { params: { path: { patient_id: id } } }));
}

/** Every monitored patient's latest NEWS2 (of one ward, or all), page by page (the board's column). */
export async function listAllNews2(ward: string | null, maxPages = 20): Promise<PatientNews2[]> {
  const items: PatientNews2[] = [];
  let after: string | undefined;
  for (let page = 0; page < maxPages; page++) {
    const result = await unwrap(
      api.GET("/api/news2", { params: { query: { limit: 1000, after, ...(ward ? { ward } : {}) } } }),
    );
    items.push(...result.items);
    if (!result.next_after) break;
    after = result.next_after;
  }
  return items;
}

export async function getSignInConfig(): Promise<SignInConfig> {
  return unwrap(api.GET("/api/auth/config"));
}

/** Who the token names and every route its roles may call (what the dashboard offers). */
export function getSession(): Promise<Session> {
  return unwrap(api.GET("/api/auth/session"));
}

/**
 * Whether the server still accepts the token (GET /api/auth/session). A plain fetch, not the
 * typed client: its 401 is the answer here, not news for the session watch.
 */
export async function checkSession(): Promise<TokenCheck> {
  try {
    const response = await fetch("/api/auth/session", { headers: authHeaders() });
    if (response.ok) return "valid";
    return response.status === 401 ? "refused" : "unknown";
  } catch {
    return "unknown"; // the server is not answering: nothing is known about the token
  }
}

export { ApiError };
