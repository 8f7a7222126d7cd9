// What every spec shares: the daemon's address as baseURL, a watch on the browser console
// that fails a test on any error the app did not provoke on purpose, signing in, the
// REST API for arranging state behind the browser's back, and screenshots.

import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Page, test as base, expect } from "@playwright/test";
import { daemon, guest } from "./daemon";

export { expect };

/**
 * Collects the page's console errors and uncaught exceptions. Chrome logs every 4xx/5xx
 * response as "Failed to load resource"; `allowing(status, step)` accepts that line for
 * the statuses a step provokes on purpose (a wrong token, an invalid form), and only
 * while the step runs.
 */
export class ConsoleWatch {
  readonly errors: string[] = [];
  private allowed = new Set<number>();

  constructor(page: Page) {
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      const text = message.text();
      const status = /Failed to load resource: the server responded with a status of (\d+)/.exec(text);
      if (status && this.allowed.has(Number(status[1]))) return;
      const where = message.location();
      this.errors.push(`console error: ${text}${where.url ? ` (${where.url}:${where.lineNumber})` : ""}`);
    });
    page.on("pageerror", (error) => this.errors.push(`page error: ${error.stack ?? error.message}`));
  }

  async allowing<T>(status: number, step: () => Promise<T>): Promise<T> {
    this.allowed.add(status);
    try {
      return await step();
    } finally {
      this.allowed.delete(status);
    }
  }

  /** Fails with everything collected since the last check. */
  check(): void {
    const errors = this.errors.splice(0);
    expect(errors, "the browser console stays free of errors").toEqual([]);
  }
}

export const test = base.extend<{ watch: ConsoleWatch }>({
  baseURL: async ({}, use) => use(daemon.url),
  watch: [
    async ({ page }, use) => {
      const watch = new ConsoleWatch(page);
      await use(watch);
      watch.check();
    },
    { auto: true },
  ],
});

/** Opens the app and signs in with the daemon's token through the sign-in form. */
export async function signIn(page: Page, hash = "#/"): Promise<void> {
  await page.goto(`/${hash}`);
  await page.getByLabel("API token").fill(daemon.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: { code?: string; message?: string; field?: string },
    what: string,
  ) {
    super(`${what}: ${status} ${body.code ?? ""} ${body.message ?? ""}`);
  }
}

/** A call to the daemon's REST API with the test token; throws ApiFailure unless 2xx. */
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${daemon.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${daemon.token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed = text ? (JSON.parse(text) as unknown) : undefined;
  if (!response.ok) throw new ApiFailure(response.status, (parsed ?? {}) as ApiFailure["body"], `${method} ${path}`);
  return parsed as T;
}

/** What the tests read of a VM (GET /v1/vms/{name}). */
export interface Vm {
  name: string;
  state: string;
  spec: { boot?: { cmdline?: string }; disks?: { volume?: string }[] };
  nics: { mac: string; network: string; ip: string | null }[];
}

/** A spec for the test guest: TCG-friendly, 128 MiB, serial console on ttyS0. */
export function guestSpec(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { kernel, initrd } = guest();
  return { name, vcpus: 1, memory: "128MiB", boot: { kernel, initrd, cmdline: "console=ttyS0" }, ...extra };
}

/** Removes a VM whatever state it is in; for cleanup after a test that may have failed midway. */
export async function destroyVm(name: string): Promise<void> {
  try {
    await api("POST", `/v1/vms/${name}/stop`, { force: true });
  } catch (error) {
    if (!(error instanceof ApiFailure) || ![404, 409].includes(error.status)) throw error;
  }
  try {
    await api("DELETE", `/v1/vms/${name}`);
  } catch (error) {
    if (!(error instanceof ApiFailure) || error.status !== 404) throw error;
  }
}

const screenshots = join(dirname(fileURLToPath(import.meta.url)), "../test-results/screenshots");

/** A full-page screenshot for people to look at (not compared with anything). */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}
