// Stops the daemon global-setup started, then any QEMU of its data directory the daemon
// did not take down (a test that failed midway may leave guests running), and removes
// the directory.

import { readdirSync, readFileSync, rmSync } from "node:fs";
import { ENV } from "./daemon";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((wake) => setTimeout(wake, 100));
  }
  return true;
}

/** Processes whose command line mentions `dir`: the QEMUs of this run's VMs. */
function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir)) found.push(pid);
    } catch {
      // Gone since readdir, or not ours to read.
    }
  }
  return found;
}

export default async function globalTeardown(): Promise<void> {
  const pid = Number(process.env[ENV.pid]);
  const dataDir = process.env[ENV.dataDir];
  if (pid > 0 && alive(pid)) {
    process.kill(pid, "SIGTERM");
    if (!(await waitGone(pid, 30_000))) {
      console.error(`global-teardown: the daemon (pid ${pid}) ignored SIGTERM; killing it`);
      process.kill(pid, "SIGKILL");
      await waitGone(pid, 5_000);
    }
  }
  if (!dataDir) return;
  for (const leftover of processesUnder(dataDir)) {
    console.error(`global-teardown: killing pid ${leftover}, left running under ${dataDir}`);
    try {
      process.kill(leftover, "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
    await waitGone(leftover, 5_000);
  }
  if (process.env["VIREO_TEST_KEEP"]) {
    console.error(`global-teardown: keeping ${dataDir} (VIREO_TEST_KEEP is set)`);
    return;
  }
  rmSync(dataDir, { recursive: true, force: true });
}
