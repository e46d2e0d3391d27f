/** Setting the scene through the API as the server's admin (its development token): the calls the
 * e2e files share, so each scenario registers patients and sends monitor readings the same way. */
import { randomUUID } from "node:crypto";

import type { Patient } from "../src/api/types";
import type { Server } from "./server";

export function unique(prefix: string): string {
  return `${prefix}${randomUUID().slice(0, 6)}`;
}

// NEWS2 high (every parameter in its worst band: a critical alert) and NEWS2 5 (an urgent one)
export const CRITICAL = {
  heart_rate: 140, resp_rate: 28, spo2: 88, systolic_bp: 85, diastolic_bp: 50,
  temperature: 39.5, consciousness: "V", on_oxygen: true,
};
export const WORRYING = {
  heart_rate: 100, resp_rate: 22, spo2: 95, systolic_bp: 124, diastolic_bp: 78,
  temperature: 38.5, consciousness: "A", on_oxygen: false,
};

export interface AdminApi {
  /** One API call as admin; its JSON answer, or an error naming the status and body. */
  api: <T>(method: string, path: string, body?: unknown) => Promise<T>;
  /** A new patient (a unique family name and ward unless given). */
  register: (fields?: Record<string, string>) => Promise<Patient>;
  /** A monitor bound to the patient sends one reading now (POST .../telemetry with its key). */
  monitor: (patient: Patient, values: Record<string, unknown>) => Promise<void>;
}

/** The admin calls of the server `current()` returns at call time (files start it in beforeAll). */
export function adminApi(current: () => Server): AdminApi {
  async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const server = current();
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${server.token}` },
      body: body === undefined ? null : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  function register(fields: Record<string, string> = {}): Promise<Patient> {
    return api<Patient>("POST", "/api/patients", {
      given_name: "Ada",
      family_name: unique("Lovelace"),
      birth_date: "1980-12-10",
      sex: "female",
      ward: unique("Ward"),
      bed: "3",
      ...fields,
    });
  }

  async function monitor(patient: Patient, values: Record<string, unknown>): Promise<void> {
    const deviceId = unique("mon-");
    const { key } = await api<{ key: string }>("POST", "/api/devices", {
      device_id: deviceId,
      patient_id: patient.id,
      kind: "monitor",
    });
    const path = `/api/devices/${deviceId}/telemetry`;
    const response = await fetch(`${current().url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-device-key": key },
      body: JSON.stringify({ readings: [{ ts: new Date().toISOString(), ...values }] }),
    });
    if (response.status !== 202) {
      throw new Error(`POST ${path}: ${response.status} ${await response.text()}`);
    }
  }

  return { api, register, monitor };
}
