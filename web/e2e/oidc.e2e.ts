/**
 * OIDC sign-in in Chromium: a real `healthflow serve` configured with an issuer, the local test
 * identity provider (tests/oidc_provider.py, run by the project's Python), and the dashboard's
 * authorization code flow with PKCE through the provider's sign-in form. The server verifies
 * the token through its JWKS path, for HTTP and for the live socket.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { type Chromium, DESKTOP, launchChromium, openPage, screenshot } from "./browser";
import { ARTIFACTS, freePort, type Server, startServer, WEB_ROOT } from "./server";

const REPO = resolve(WEB_ROOT, "..");
const PYTHON = process.env.HEALTHFLOW_PYTHON ?? join(REPO, ".venv", "bin", "python");
const CLIENT_ID = "healthflow-dashboard";
const TOKEN_TTL_S = 12;

let provider: ChildProcess;
let issuer: string;
let server: Server;
let chromium: Chromium;

async function untilUp(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (provider.exitCode !== null) throw new Error("the test identity provider exited early");
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

beforeAll(async () => {
  const [idpPort, appPort] = [await freePort(), await freePort()];
  issuer = `http://127.0.0.1:${String(idpPort)}`;
  provider = spawn(
    PYTHON,
    [
      "-m",
      "tests.oidc_provider",
      "--port",
      String(idpPort),
      "--client-id",
      CLIENT_ID,
      "--audience",
      "healthflow",
      "--redirect-uri",
      `http://127.0.0.1:${String(appPort)}/auth/callback`,
      // short-lived access tokens with refresh tokens: the dashboard must renew them unseen
      "--token-ttl",
      String(TOKEN_TTL_S),
      "--refresh-tokens",
    ],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] },
  );
  mkdirSync(ARTIFACTS, { recursive: true });
  const log = createWriteStream(join(ARTIFACTS, "oidc-provider.log"));
  provider.stdout?.pipe(log);
  provider.stderr?.pipe(log);
  await untilUp(`${issuer}/.well-known/openid-configuration`);
  server = await startServer("oidc", {
    port: appPort,
    devSignIn: false,
    env: {
      HEALTHFLOW_AUTH_JWKS_URL: `${issuer}/jwks`,
      HEALTHFLOW_AUTH_ISSUER: issuer,
      HEALTHFLOW_AUTH_AUDIENCE: "healthflow",
      HEALTHFLOW_AUTH_CLIENT_ID: CLIENT_ID,
      // no clock leeway: an expired access token is refused at once
      HEALTHFLOW_AUTH_LEEWAY_S: "0",
    },
  });
  chromium = await launchChromium();
});

afterAll(async () => {
  await chromium.close();
  await server.stop();
  provider.kill("SIGTERM");
});

function decoded(token: string | null): Record<string, unknown>[] {
  return (token ?? "").split(".").slice(0, 2).map((part) =>
    JSON.parse(Buffer.from(part, "base64url").toString()) as Record<string, unknown>,
  );
}

function heldToken(page: Page): Promise<string | null> {
  return page.evaluate(() => window.sessionStorage.getItem("healthflow.accessToken"));
}

describe("OIDC sign-in", () => {
  it("signs in at the identity provider with code + PKCE and opens the live board", async () => {
    const watched = await openPage(chromium.browser, server.url, DESKTOP);
    const page = watched.page;
    await page.goto("/analytics");
    await page.getByRole("button", { name: "Sign in with your organisation" }).click();

    // the identity provider's own page
    await page.waitForURL(`${issuer}/authorize**`);
    const authorize = new URL(page.url());
    expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
    expect(authorize.searchParams.get("client_id")).toBe(CLIENT_ID);
    await page.getByLabel("User name").fill("dr-oidc");
    await page.getByLabel("Role").selectOption("clinician");
    await page.getByRole("button", { name: "Sign in" }).click();

    // back on the dashboard, where the sign-in started, with no code left in the address bar
    await page.waitForURL(`${server.url}/analytics`);
    await page.getByRole("heading", { name: "Analytics" }).waitFor();
    await page.locator('[data-live-state="open"]').waitFor();
    await page.getByTestId("patients-total").waitFor();
    const token = await page.evaluate(() => window.sessionStorage.getItem("healthflow.accessToken"));
    const [header, payload] = decoded(token);
    expect(header?.alg).toBe("RS256");
    expect(payload).toMatchObject({ iss: issuer, aud: "healthflow", sub: "dr-oidc", roles: ["clinician"] });

    // the API takes the issuer's token: register through the form and see the patient
    await page.getByRole("link", { name: "Register" }).click();
    await page.getByLabel("Given name").fill("Rosalind");
    await page.getByLabel("Family name").fill("Franklin");
    await page.getByLabel("Birth date").fill("1960-07-25");
    await page.getByLabel("Sex").selectOption("female");
    await page.getByLabel("Ward").fill("Crystal");
    await page.getByRole("button", { name: "Register" }).click();
    await page.getByRole("heading", { name: "Franklin, Rosalind" }).waitFor();
    await screenshot(page, "oidc-signed-in-1280");
    expect(watched.errors, "no console errors in the browser").toEqual([]);
    await watched.context.close();
  });

  it("renews the short-lived access token silently and the dashboard keeps working", async () => {
    const watched = await openPage(chromium.browser, server.url, DESKTOP);
    const page = watched.page;
    await page.goto("/alerts");
    await page.getByRole("button", { name: "Sign in with your organisation" }).click();
    await page.waitForURL(`${issuer}/authorize**`);
    await page.getByLabel("User name").fill("nurse-renewed");
    await page.getByLabel("Role").selectOption("clinician");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(`${server.url}/alerts`);
    await page.locator('[data-live-state="open"]').waitFor();
    const first = await heldToken(page);
    const expiresAt = Number(decoded(first)[1]?.exp) * 1000;

    // a new token from the refresh token before the first expires, with no page to click
    await expect.poll(() => heldToken(page), { timeout: 30_000 }).not.toBe(first);
    const renewed = await heldToken(page);
    expect(decoded(renewed)[1]).toMatchObject({ iss: issuer, sub: "nurse-renewed", roles: ["clinician"] });
    // past the first token's end, the API and the live socket still take the renewed one
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 1000));
    await page.getByRole("link", { name: "Analytics" }).click();
    await page.getByTestId("patients-total").waitFor();
    expect(await page.getByTestId("signed-out-notice").count()).toBe(0);
    expect(await page.locator('[data-live-state="open"]').count()).toBe(1);
    expect(watched.errors, "no console errors in the browser").toEqual([]);
    await watched.context.close();
  });
});
