/**
 * Each role sees only what it may do: signed in as a ward nurse and as an analyst, every view the
 * dashboard offers is walked, and no control is shown that the server would refuse, no response
 * is a 403 (or any other error) and the browser logs no error. A forbidden address says so.
 */
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import type { Patient } from "../src/api/types";
import {
  type Chromium,
  closePages,
  launchChromium,
  openPage,
  screenshot,
  type WatchedPage,
} from "./browser";
import { adminApi, CRITICAL, unique } from "./helpers";
import { type Server, startServer } from "./server";

let server: Server;
const { api, register, monitor } = adminApi(() => server);
let chromium: Chromium;
let opened: WatchedPage[] = [];

beforeAll(async () => {
  server = await startServer("roles");
  chromium = await launchChromium();
});

afterAll(async () => {
  await chromium.close();
  await server.stop();
});

afterEach(async ({ task }) => {
  const errors = await closePages(opened, task);
  opened = [];
  expect(errors, "no console errors in the browser").toEqual([]);
});

/** A signed-out page that records every HTTP error answer, every API request and every socket. */
async function openRecorded() {
  const watched = await openPage(chromium.browser, server.url);
  opened.push(watched);
  const { page } = watched;
  const failed: string[] = [];
  const requests: string[] = [];
  const sockets: string[] = [];
  page.on("response", (r) => {
    if (r.status() >= 400) failed.push(`${String(r.status())} ${r.request().method()} ${r.url()}`);
  });
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith("/api/")) requests.push(`${r.method()} ${url.pathname}`);
  });
  page.on("websocket", (ws) => sockets.push(ws.url()));
  return { page, failed, requests, sockets };
}

async function signIn(page: Page, role: string, name: string, ward = ""): Promise<void> {
  await page.goto("/");
  await page.getByLabel("Role").selectOption(role);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Ward (limits a nurse)").fill(ward);
  await page.getByRole("button", { name: "Sign in" }).click();
}

function nav(page: Page) {
  return page.getByRole("navigation", { name: "Main" });
}

/** Visit every view the navigation offers, each by its link; returns the labels, in order. */
async function walkViews(page: Page, role: string): Promise<string[]> {
  const labels = (await nav(page).getByRole("link").allTextContents()).map((t) => t.replace(/\d+ waiting$/, "").trim());
  for (const label of labels) {
    await nav(page).getByRole("link", { name: label, exact: false }).first().click();
    const heading = label === "Register" ? "Register patient" : label;
    await page.getByRole("heading", { level: 1, name: heading }).waitFor();
    await screenshot(page, `role-${role}-${label.toLowerCase().replace(/ /g, "-")}-1280`);
  }
  return labels;
}

async function notPermitted(page: Page, path: string): Promise<void> {
  await page.goto(path);
  await page.getByRole("heading", { level: 1, name: "Not permitted for your role" }).waitFor();
}

describe("a nurse limited to one ward", () => {
  it("is offered every view but Register, and uses each without a refusal", async () => {
    const ward = unique("Ward ");
    const patient = await register({ ward, bed: "4" });
    await monitor(patient, CRITICAL);
    // the alert engine marks her critical after the reading: the status form starts from there
    await expect
      .poll(async () => (await api<Patient>("GET", `/api/patients/${patient.id}`)).status, { timeout: 10_000 })
      .toBe("critical");
    const { page, failed } = await openRecorded();
    await signIn(page, "nurse", "nurse-roles", ward);
    await page.locator('[data-live-state="open"]').waitFor();
    await page.locator(`tr[data-patient-id="${patient.id}"]`).waitFor();

    expect(await page.getByRole("link", { name: "Register patient" }).count()).toBe(0);
    expect(await walkViews(page, "nurse")).toEqual(["Ward board", "Alerts", "Analytics", "Operations"]);
    await page.getByTestId("live-metrics").waitFor(); // `metrics` is hers to receive

    // what she may do on a patient: acknowledge the alert, change the status
    await page.goto(`/patients/${patient.id}`);
    const alertRow = page.locator('section[aria-labelledby="patient-alerts-title"] tr[data-alert-id]');
    await alertRow.getByRole("button", { name: /Acknowledge/ }).click();
    await page.locator('section[aria-labelledby="patient-alerts-title"] tr[data-alert-status="acknowledged"]').waitFor();
    await page.getByLabel("New status").selectOption("in_treatment");
    await page.getByRole("button", { name: "Change status" }).click();
    await page.locator("h1 + [data-status='in_treatment']").waitFor();
    await screenshot(page, "role-nurse-patient-1280");

    // registering is not hers: by address, the page says so and offers no form
    await notPermitted(page, "/patients/new");
    expect(await page.getByLabel("Given name").count()).toBe(0);
    expect(await nav(page).getByRole("link", { name: "Register" }).count()).toBe(0);
    await screenshot(page, "role-nurse-register-refused-1280");

    expect(failed, "no refused or failed request").toEqual([]);
  });
});

describe("an analyst", () => {
  it("lands on analytics, is offered nothing else, opens no live socket and is never refused", async () => {
    const patient = await register({ ward: unique("Ward "), bed: "1" });
    const { page, failed, requests, sockets } = await openRecorded();
    await signIn(page, "analyst", "analyst-roles");
    await page.getByRole("heading", { level: 1, name: "Analytics" }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/analytics");
    await page.getByTestId("patients-total").waitFor();
    expect(await page.locator("[data-live-state]").count()).toBe(0);
    expect(await page.getByTestId("critical-banner").count()).toBe(0);
    expect(await walkViews(page, "analyst")).toEqual(["Analytics"]);

    // every other view, by address: a plain refusal, and nothing asked of the server for it
    for (const path of ["/patients/new", `/patients/${patient.id}`, "/alerts", "/operations"]) {
      await notPermitted(page, path);
      expect(await page.getByRole("link", { name: "Go to your start page" }).getAttribute("href")).toBe(
        "/analytics",
      );
    }
    await screenshot(page, "role-analyst-refused-1280");
    await page.goto("/");
    await page.getByRole("heading", { level: 1, name: "Analytics" }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/analytics");

    expect(sockets, "no live socket").toEqual([]);
    const asked = new Set(requests);
    expect([...asked].sort()).toEqual([
      "GET /api/analytics/dashboard",
      "GET /api/auth/config",
      "GET /api/auth/session",
      "POST /api/dev/sign-in",
    ]);
    expect(failed, "no refused or failed request").toEqual([]);
  });
});
