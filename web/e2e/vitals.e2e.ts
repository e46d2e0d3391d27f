/**
 * Bedside monitoring in Chromium against a real `healthflow serve`: `healthflow simulate` streams
 * vitals for two patients, one deteriorating; the critical alert reaches every open view as a
 * banner and is acknowledged with one click; the patient's charts and NEWS2 breakdown follow the
 * readings live; the board shows NEWS2 in words; operations shows the live figures.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";

import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import type { Alert, News2, Patient } from "../src/api/types";
import {
  type Chromium,
  closePages,
  DESKTOP,
  launchChromium,
  openPage,
  screenshot,
  TABLET,
  type WatchedPage,
} from "./browser";
import { adminApi } from "./helpers";
import { ARTIFACTS, HEALTHFLOW, type Server, startServer } from "./server";

let server: Server;
const { api } = adminApi(() => server);
let chromium: Chromium;
let simulator: ChildProcess | null = null;
let opened: WatchedPage[] = [];
const WARD = `SIM${randomUUID().slice(0, 6)}`;
// set by the first test: the patient the simulator makes deteriorate, and its alert
let deteriorating = "";
let alertId = "";

beforeAll(async () => {
  server = await startServer("vitals");
  chromium = await launchChromium();
});

afterAll(async () => {
  simulator?.kill("SIGTERM");
  await chromium.close();
  await server.stop();
});

afterEach(async ({ task }) => {
  const errors = await closePages(opened, task);
  opened = [];
  expect(errors, "no console errors in the browser").toEqual([]);
});

async function open(path: string, viewport = DESKTOP): Promise<Page> {
  const watched = await openPage(chromium.browser, server.url, viewport, server.token);
  opened.push(watched);
  await watched.page.goto(path);
  await watched.page.locator('[data-live-state="open"]').waitFor();
  await watched.page.evaluate(() => {
    (window as unknown as { marker: string }).marker = "not reloaded";
  });
  return watched.page;
}

async function noSidewaysScroll(page: Page, what: string): Promise<void> {
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  expect(overflow, `${what} scrolls sideways`).toBeLessThanOrEqual(0);
}

/** Press Tab until the focused element's accessible name matches; fail after 60 presses. */
async function tabTo(page: Page, name: RegExp): Promise<void> {
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(
      () => document.activeElement?.getAttribute("aria-label") ?? document.activeElement?.textContent ?? "",
    );
    if (name.test(focused.trim())) {
      const outline = await page.evaluate(() =>
        document.activeElement ? getComputedStyle(document.activeElement).outlineStyle : "none",
      );
      expect(outline, "a visible focus ring").not.toBe("none");
      return;
    }
  }
  throw new Error(`could not reach ${String(name)} with the keyboard`);
}

async function notReloaded(page: Page): Promise<void> {
  expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe(
    "not reloaded",
  );
}

/** `healthflow simulate`: two patients with monitors, two readings a second, one deteriorating
 * (onset at 10% of the run, high NEWS2 after the ramp). */
function simulate(): ChildProcess {
  const child = spawn(
    HEALTHFLOW,
    [
      "simulate",
      "--url", server.url,
      "--token", server.token,
      "--devices", "2",
      "--deteriorate", "1",
      "--rate", "2",
      "--duration", "90",
      "--ramp", "6",
      "--ward", WARD,
      "--seed", "7",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const log = createWriteStream(join(ARTIFACTS, "vitals-simulator.log"));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  return child;
}

describe("a deteriorating patient", () => {
  it("raises a critical alert shown on every open view until acknowledged with one click", async () => {
    const board = await open("/");
    const analytics = await open("/analytics");
    simulator = simulate();

    const banner = board.getByTestId("critical-banner");
    await banner.locator("li[data-alert-id]").waitFor({ timeout: 60_000 });
    alertId = (await banner.locator("li[data-alert-id]").first().getAttribute("data-alert-id")) ?? "";
    const alerts = await api<{ items: Alert[] }>("GET", "/api/alerts?status=open&severity=critical");
    const alert = alerts.items.find((a) => a.id === alertId);
    expect(alert?.ward).toBe(WARD);
    deteriorating = alert?.patient_id ?? "";
    const patient = await api<Patient>("GET", `/api/patients/${deteriorating}`);
    // the banner names the patient (the board fetched the name) and says it is critical
    await banner.getByText(`${patient.family_name}, ${patient.given_name}`).waitFor();
    await expect(banner.getByRole("heading").textContent()).resolves.toContain("Critical alert");
    // every view has it, including one that was open before the alert existed
    await analytics.getByTestId("critical-banner").locator(`li[data-alert-id="${alertId}"]`).waitFor();
    // the board, open since before the first reading, keeps its NEWS2 column live
    await board.locator(`tr[data-patient-id="${deteriorating}"] [data-risk="high"]`).waitFor();
    await screenshot(board, "banner-board-1280");

    // at tablet width the banner fits, and the keyboard reaches its button
    const tablet = await open("/", TABLET);
    await tablet.getByTestId("critical-banner").locator(`li[data-alert-id="${alertId}"]`).waitFor();
    await noSidewaysScroll(tablet, "board with banner at tablet width");
    await tabTo(tablet, /^Acknowledge critical alert for /);
    await screenshot(tablet, "banner-board-tablet");

    const view = await open("/alerts");
    const row = view.locator(`tr[data-alert-id="${alertId}"]`);
    expect(await row.getAttribute("data-alert-status")).toBe("open");
    expect(await row.locator("[data-severity]").getAttribute("data-severity")).toBe("critical");
    await expect(view.getByTestId("alerts-waiting").textContent()).resolves.toMatch(/^\d+ waiting$/);
    await screenshot(view, "alerts-open-1280");

    await row.getByRole("button", { name: /^Acknowledge critical alert/ }).click();

    await view.locator(`tr[data-alert-id="${alertId}"][data-alert-status="acknowledged"]`).waitFor();
    await expect(row.locator("[data-acknowledged-by]").getAttribute("data-acknowledged-by")).resolves.toBe("e2e");
    for (const page of [board, analytics, view, tablet]) {
      await page.getByTestId("critical-banner").waitFor({ state: "detached" });
      await notReloaded(page);
    }
    const stored = await api<{ items: Alert[] }>("GET", `/api/alerts?patient_id=${deteriorating}`);
    expect(stored.items.find((a) => a.id === alertId)).toMatchObject({
      status: "acknowledged",
      acknowledged_by: "e2e",
    });
    await screenshot(view, "alerts-acknowledged-1280");
  });
});

describe("patient detail", () => {
  it("charts the vitals live and breaks NEWS2 down by parameter", async () => {
    expect(deteriorating, "the alert test found the deteriorating patient").not.toBe("");
    const page = await open(`/patients/${deteriorating}`);
    const charts = page.getByTestId("vitals-charts");
    await charts.locator("svg.recharts-surface").nth(4).waitFor();
    expect(await charts.locator("figure.vital-chart").count()).toBe(5);
    // every chart has drawn a line through the readings
    await charts.locator("figure.vital-chart").last().locator("path.recharts-line-curve").waitFor();
    expect(await charts.locator("path.recharts-line-curve").count()).toBeGreaterThanOrEqual(6);

    // new readings arrive over the live socket: the latest heart rate changes without reload
    const latest = page.getByTestId("latest-heart_rate");
    const before = await latest.textContent();
    await expect.poll(() => latest.textContent(), { timeout: 30_000 }).not.toBe(before);
    await notReloaded(page);

    const breakdown = page.getByTestId("news2-breakdown");
    await expect(breakdown.locator("tr[data-parameter]").count()).resolves.toBe(7);
    // the simulator's readings carry every parameter: all measured, none missing
    expect(await breakdown.locator('tr[data-basis="measured"]').count()).toBe(7);
    // the breakdown is the API's, parameter by parameter (compared once both agree on the time)
    await expect
      .poll(
        async () => {
          const scored = await api<News2>("GET", `/api/patients/${deteriorating}/news2`);
          const shown: Record<string, number> = {};
          for (const cell of await breakdown.locator("tr[data-parameter]").all()) {
            const key = (await cell.getAttribute("data-parameter")) ?? "";
            shown[key] = Number(await cell.locator("[data-score]").getAttribute("data-score"));
          }
          const total = Number(await breakdown.locator("[data-news2]").getAttribute("data-news2"));
          return { same: JSON.stringify(shown) === JSON.stringify(sorted(scored.sub_scores)) && total === scored.total };
        },
        { timeout: 30_000 },
      )
      .toEqual({ same: true });
    // the patient's alert, acknowledged in the test before
    await page.locator(`section[aria-labelledby="patient-alerts-title"] tr[data-alert-id="${alertId}"]`).waitFor();
    await screenshot(page, "detail-vitals-1280");
    const narrow = await open(`/patients/${deteriorating}`, TABLET);
    await narrow.getByTestId("vitals-charts").locator("path.recharts-line-curve").first().waitFor();
    await noSidewaysScroll(narrow, "patient detail with charts at tablet width");
    await screenshot(narrow, "detail-vitals-tablet");
    await page.getByRole("combobox", { name: "Period" }).selectOption({ label: "Last day" });
    await charts.locator("path.recharts-line-curve").first().waitFor();
    await screenshot(page, "detail-vitals-day-1280");
  });

  it("says so when a patient has no readings yet, and asks nothing that would fail", async () => {
    const patient = await api<Patient>("POST", "/api/patients", {
      given_name: "Quiet",
      family_name: `Bed${randomUUID().slice(0, 4)}`,
      birth_date: "1970-01-01",
      sex: "male",
      ward: WARD,
    });
    const page = await open(`/patients/${patient.id}`);
    await page.getByTestId("no-readings").waitFor();
    expect(await page.getByTestId("news2-breakdown").count()).toBe(0);
    expect(await page.getByTestId("vitals-charts").count()).toBe(0);
  });
});

function sorted(scores: Record<string, number>): Record<string, number> {
  const order = ["resp_rate", "spo2", "air_or_oxygen", "systolic_bp", "heart_rate", "consciousness", "temperature"];
  return Object.fromEntries(order.filter((k) => k in scores).map((k) => [k, scores[k] ?? 0]));
}

describe("ward board", () => {
  it("shows each monitored patient's NEWS2 with its risk in words, not colour alone", async () => {
    const page = await open("/");
    await page.getByLabel("Ward", { exact: true }).selectOption(WARD);
    const row = page.locator(`tr[data-patient-id="${deteriorating}"]`);
    await row.locator('[data-risk="high"]').waitFor();
    expect(await row.locator("[data-risk]").textContent()).toMatch(/^▲\d+High$/);
    const scores = await api<{ items: { patient_id: string; risk: string }[] }>("GET", `/api/news2?ward=${WARD}`);
    const calm = scores.items.find((s) => s.patient_id !== deteriorating);
    expect(calm?.risk).toBe("low");
    await page.locator(`tr[data-patient-id="${calm?.patient_id ?? ""}"] [data-risk="low"]`).getByText("Low").waitFor();
    await screenshot(page, "board-news2-1280");
  });
});

describe("operations", () => {
  it("shows throughput, queue, dead letters and clients from the live metrics", async () => {
    const page = await open("/operations");
    await page.getByTestId("health-status").getByText("Healthy").waitFor();
    await page.getByTestId("live-metrics").waitFor();
    expect(await page.getByTestId("queue-depth").textContent()).toMatch(/^\d+ \/ 1000$/);
    expect(await page.getByTestId("dead-letters").textContent()).toBe("0");
    expect(Number(await page.getByTestId("connected-clients").textContent())).toBeGreaterThanOrEqual(1);
    // the simulator still streams: events come in at a rate above zero
    await expect
      .poll(async () => Number.parseFloat((await page.getByTestId("events-in").textContent()) ?? "0"), {
        timeout: 30_000,
      })
      .toBeGreaterThan(0);
    await page.getByTestId("rates-chart").locator("path.recharts-line-curve").first().waitFor();
    await screenshot(page, "operations-live-1280");
  });
});
