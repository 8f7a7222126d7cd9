// Starts one real daemon for the whole run: a fresh data directory, the API on a free
// TCP port of 127.0.0.1, history sampled every second so charts fill quickly.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ENV, guest } from "./daemon";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? done(address.port) : fail(new Error("no port"))));
    });
  });
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

export default async function globalSetup(): Promise<void> {
  guest(); // fail now, with the fix, rather than in every test
  const binary = process.env["VIREO_BIN"] ?? join(repo, "target/debug/vireo");
  if (!existsSync(binary)) throw new Error(`${binary} is missing: cargo build -p vireo`);

  const dataDir = mkdtempSync(join(tmpdir(), "vireo-web-"));
  const socket = join(dataDir, "vireo.sock");
  const port = await freePort();
  const log = join(dataDir, "daemon.log");
  const output = openSync(log, "a");
  const child = spawn(
    binary,
    ["serve", "--data-dir", dataDir, "--socket", socket, "--listen", `127.0.0.1:${port}`, "--no-default-network", "--history-interval", "1"],
    { stdio: ["ignore", output, output] },
  );
  let exited: string | null = null;
  child.once("exit", (code, signal) => (exited = `exited (${signal ?? code})`));
  process.env[ENV.pid] = String(child.pid);
  process.env[ENV.dataDir] = dataDir;

  const url = `http://127.0.0.1:${port}`;
  const tokenFile = join(dataDir, "api-token");
  try {
    const token = await until("the daemon's socket and token", 30_000, () => {
      if (exited) throw new Error(`the daemon ${exited}`);
      return existsSync(socket) && existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() || undefined : undefined;
    });
    await until("the daemon's TCP listener", 30_000, async () => {
      if (exited) throw new Error(`the daemon ${exited}`);
      try {
        const response = await fetch(`${url}/v1/host`, { headers: { authorization: `Bearer ${token}` } });
        return response.ok ? true : undefined;
      } catch {
        return undefined;
      }
    });
    process.env[ENV.url] = url;
    process.env[ENV.token] = token;
  } catch (error) {
    // Playwright runs no teardown for a setup that threw: clean up here.
    child.kill("SIGKILL");
    const tail = existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-30).join("\n") : "";
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\n--- ${log} ---\n${tail}`);
  }
}
