/** Headless Debian Chromium driven by playwright-core (no browser download needed). */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

import { ARTIFACTS } from "./server";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const SCREENSHOTS = join(ARTIFACTS, "screenshots");

export const DESKTOP = { width: 1280, height: 800 };
export const TABLET = { width: 820, height: 1180 };

export interface Chromium {
  browser: Browser;
  close: () => Promise<void>;
}

export async function launchChromium(): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium (scripts/ensure-chromium.sh) or set CHROMIUM_PATH`,
    );
  }
  mkdirSync(SCREENSHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    // playwright gives every launch a fresh temporary profile (--user-data-dir) and removes it
  });
  return {
    browser,
    close: async () => {
      await browser.close();
    },
  };
}

/** A page that records every console error and uncaught exception, for the no-errors check. */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  errors: string[];
}

export async function openPage(
  browser: Browser,
  baseURL: string,
  viewport = DESKTOP,
  token: string | null = null,
): Promise<WatchedPage> {
  const context = await browser.newContext({ baseURL, viewport });
  if (token) {
    // signed in before the first script runs, as after the development sign-in
    await context.addInitScript((value: string) => {
      window.sessionStorage.setItem("healthflow.accessToken", value);
    }, token);
  }
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  return { page, context, errors };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * The end of a test: the last look of each page it opened (failed tests under their own name),
 * the pages closed, and the console errors they recorded, less the ones `allowed` matches.
 */
export async function closePages(
  pages: WatchedPage[],
  test: { name: string; result?: { state?: string } },
  allowed: RegExp | null = null,
): Promise<string[]> {
  const prefix = test.result?.state === "fail" ? "failed-" : "tests/";
  for (const [i, p] of pages.entries()) await screenshot(p.page, `${prefix}${test.name}-${i}`);
  const errors = pages.flatMap((p) => p.errors).filter((e) => !allowed?.test(e));
  for (const p of pages) await p.context.close();
  return errors;
}
