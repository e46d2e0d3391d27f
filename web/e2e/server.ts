/** A real `healthflow serve` on a free port with its own data dir, killed when done. */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const WEB_ROOT = resolve(import.meta.dirname, "..");
export const ARTIFACTS = join(WEB_ROOT, "test-artifacts");
const DIST = join(WEB_ROOT, "dist");
export const HEALTHFLOW = process.env.HEALTHFLOW_BIN ?? resolve(WEB_ROOT, "..", ".venv", "bin", "healthflow");

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => { done(port); });
    });
  });
}

export interface Server {
  url: string;
  /** An admin token from the development sign-in (valid across restarts: same data dir);
   * empty when the server signs in through an issuer. */
  token: string;
  port: number;
  dataDir: string;
  stop: () => Promise<void>;
  restart: () => Promise<void>;
  /** A development token from `healthflow token` (e.g. `["--sub", "n", "--role", "nurse", "--ttl", "5s"]`). */
  mintToken: (args: string[]) => Promise<string>;
}

async function waitUntilUp(url: string, process: ChildProcess, log: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (process.exitCode !== null) throw new Error(`healthflow serve exited early; see ${log}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`healthflow serve did not answer within 30 s; see ${log}`);
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(killer);
      done();
    });
    child.kill("SIGTERM");
  });
}

export interface ServerOptions {
  /** Extra HEALTHFLOW_* settings (e.g. an OIDC issuer). */
  env?: Record<string, string>;
  port?: number;
  /** Get an admin token from the development sign-in (off with an issuer: there is none). */
  devSignIn?: boolean;
}

export async function startServer(name: string, options: ServerOptions = {}): Promise<Server> {
  if (!existsSync(join(DIST, "index.html"))) {
    throw new Error(`${DIST} is not built: run \`npm run build\` first (make test does)`);
  }
  if (!existsSync(HEALTHFLOW)) {
    throw new Error(`${HEALTHFLOW} not found: run \`make install\` or set HEALTHFLOW_BIN`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), "healthflow-e2e-"));
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const log = join(ARTIFACTS, `${name}-server.log`);
  let child: ChildProcess;
  const env = {
    // the embedded default, whatever HEALTHFLOW_* the calling shell or CI has set
    ...Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("HEALTHFLOW_")),
    ),
    HEALTHFLOW_WEB_DIR: DIST,
    HEALTHFLOW_LOG_LEVEL: "warning",
    HEALTHFLOW_WORKER_SHUTDOWN_GRACE_S: "1",
    ...options.env,
  };
  const launch = async () => {
    child = spawn(HEALTHFLOW, ["serve", "--port", String(port), "--data-dir", dataDir], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out = createWriteStream(log, { flags: "a" });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    await waitUntilUp(url, child, log);
  };
  await launch();
  let token = "";
  if (options.devSignIn ?? true) {
    const signIn = await fetch(`${url}/api/dev/sign-in`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ role: "admin", sub: "e2e" }),
    });
    ({ access_token: token } = (await signIn.json()) as { access_token: string });
  }
  return {
    url,
    token,
    port,
    dataDir,
    stop: async () => {
      await stopProcess(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
    restart: async () => {
      await stopProcess(child);
      await launch();
    },
    mintToken: (args) =>
      new Promise((done, fail) => {
        // `healthflow token` signs with the data dir's development secret, as the server does
        execFile(HEALTHFLOW, ["token", ...args, "--data-dir", dataDir], { env }, (error, stdout) => {
          if (error) fail(new Error(`healthflow token failed: ${error.message}`));
          else done(stdout.trim());
        });
      }),
  };
}
