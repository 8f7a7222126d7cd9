// Performance figures, reported and not asserted (machines differ too much for limits):
// what a first visit downloads and how soon it can be used, and how long a VM's state
// change takes to reach the open VM list. Written to test-results/perf.json.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser } from "@playwright/test";
import { api, ConsoleWatch, destroyVm, expect, guestSpec, signIn, test } from "./fixtures";
import { daemon } from "./daemon";

const results = join(dirname(fileURLToPath(import.meta.url)), "../test-results");
const report: Record<string, unknown> = {};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

test.describe.configure({ mode: "serial" });

test.afterAll(() => {
  mkdirSync(results, { recursive: true });
  const path = join(results, "perf.json");
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`${path}:\n${JSON.stringify(report, null, 2)}`);
});

/** One visit in a fresh profile with the cache off: bytes on the wire and time to a usable sign-in. */
async function firstLoad(browser: Browser): Promise<{ bytes: number; tti: number; resources: Record<string, number> }> {
  const context = await browser.newContext({ baseURL: daemon.url });
  try {
    const page = await context.newPage();
    const watch = new ConsoleWatch(page);
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    const urls = new Map<string, string>();
    const resources: Record<string, number> = {};
    cdp.on("Network.requestWillBeSent", (event) => urls.set(event.requestId, new URL(event.request.url).pathname));
    cdp.on("Network.loadingFinished", (event) => {
      const path = urls.get(event.requestId) ?? event.requestId;
      resources[path] = (resources[path] ?? 0) + event.encodedDataLength;
    });
    // Stamped by the page itself, so the figure holds no polling delay of the test's.
    await page.addInitScript(() => {
      const stamp = () => {
        const button = [...document.querySelectorAll("button")].find((b) => b.textContent?.trim() === "Sign in");
        if (button && !button.disabled && button.checkVisibility()) {
          (window as unknown as { vireoTti: number }).vireoTti = performance.now();
          return true;
        }
        return false;
      };
      const observer = new MutationObserver(() => stamp() && observer.disconnect());
      observer.observe(document, { childList: true, subtree: true, attributes: true });
    });
    await page.goto("/");
    const button = page.getByRole("button", { name: "Sign in" });
    await expect(button).toBeEnabled();
    const tti = await page.waitForFunction(() => (window as unknown as { vireoTti?: number }).vireoTti).then((h) => h.jsonValue());
    await page.waitForLoadState("networkidle");
    watch.check();
    const bytes = Object.values(resources).reduce((sum, n) => sum + n, 0);
    return { bytes, tti: tti as number, resources };
  } finally {
    await context.close();
  }
}

test("first load: bytes transferred and time to a usable sign-in page", async ({ browser }) => {
  const loads = [];
  for (let i = 0; i < 5; i++) loads.push(await firstLoad(browser));
  report["first_load"] = {
    runs: loads.length,
    transferred_bytes_median: median(loads.map((l) => l.bytes)),
    time_to_interactive_ms_median: Math.round(median(loads.map((l) => l.tti)) * 10) / 10,
    time_to_interactive_ms_each: loads.map((l) => Math.round(l.tti * 10) / 10),
    resources_bytes: loads[0]!.resources,
  };
});

test("state change to VM list: latency", async ({ page }) => {
  const vm = "webperf";
  await destroyVm(vm);
  await api("POST", "/v1/vms", guestSpec(vm));
  try {
    await api("POST", `/v1/vms/${vm}/start`);
    await signIn(page, "#/vms");
    const cell = page.locator(`tr[data-vm="${vm}"] [data-testid="vm-state"]`);
    await expect(cell).toHaveText("running");

    // Every text the state cell shows, with the wall-clock time it appeared. The observer
    // watches the whole table: the app may replace the row or the cell.
    await page.evaluate((name) => {
      const seen: { state: string; at: number }[] = [];
      (window as unknown as { vireoSeen: typeof seen }).vireoSeen = seen;
      const read = () => document.querySelector(`tr[data-vm="${name}"] [data-testid="vm-state"]`)?.textContent?.trim() ?? "";
      let last = read();
      new MutationObserver(() => {
        const now = read();
        if (now !== last) {
          last = now;
          seen.push({ state: now, at: Date.now() });
        }
      }).observe(document.querySelector("main") ?? document.body, { childList: true, subtree: true, characterData: true });
    }, vm);

    let lastEvent = Math.max(0, ...(await api<{ id: number }[]>("GET", `/v1/events?vm=${vm}`)).map((e) => e.id));
    const fromEvent: number[] = [];
    const fromApiReturn: number[] = [];
    for (let round = 0; round < 6; round++) {
      for (const [action, target] of [["pause", "paused"], ["resume", "running"]] as const) {
        await api("POST", `/v1/vms/${vm}/${action}`);
        const returned = Date.now();
        const shown = await page
          .waitForFunction(
            (want) => {
              const seen = (window as unknown as { vireoSeen: { state: string; at: number }[] }).vireoSeen;
              const hit = seen.find((s) => s.state === want);
              if (hit) seen.length = 0;
              return hit?.at;
            },
            target,
            { timeout: 30_000 },
          )
          .then((h) => h.jsonValue() as Promise<number>);
        const events = await api<{ id: number; time: string; kind: string; details?: { to?: string } }[]>(
          "GET",
          `/v1/events?vm=${vm}&after=${lastEvent}`,
        );
        lastEvent = Math.max(lastEvent, ...events.map((e) => e.id));
        const change = events.find((e) => e.kind === "vm.state_changed" && e.details?.to === target);
        if (change) fromEvent.push(shown - Date.parse(change.time));
        fromApiReturn.push(shown - returned);
      }
    }
    // From the event's time: the daemon's clock stamps the change, the page's clock sees it
    // (one host, one clock). From the API's return: the stream may beat the HTTP response
    // to the test, so some of these are negative.
    report["state_change_to_list_ms"] = {
      transitions: fromApiReturn.length,
      from_event_time_median: median(fromEvent),
      from_event_time_each: fromEvent,
      from_api_return_median: median(fromApiReturn),
      from_api_return_each: fromApiReturn,
    };
    expect(fromEvent.length, "every change has its vm.state_changed event").toBe(fromApiReturn.length);
  } finally {
    await destroyVm(vm);
  }
});
