// Browser end-to-end tests of the web console against a real daemon and real TCG guests
// (tests/global-setup.ts starts the daemon). Run through scripts/test-web.sh, which builds
// the app, the binary and the test guest first.

import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "tests",
  // One daemon and real guests on a small machine: one browser at a time.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env["CI"],
  retries: 0,
  // Guests boot under TCG, and other jobs may share the cores.
  timeout: 180_000,
  expect: { timeout: 30_000 },
  globalSetup: "./tests/global-setup.ts",
  globalTeardown: "./tests/global-teardown.ts",
  reporter: [["list"]],
  // Beside, not above, tests/screenshots.ts' and perf.spec.ts' files: Playwright empties
  // outputDir at every run, and a run of one spec should not wipe the others' artifacts.
  outputDir: "test-results/artifacts",
  use: {
    browserName: "chromium",
    // The daemon's address is known only once global-setup has started it.
    baseURL: process.env["VIREO_TEST_URL"],
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      // Debian's chromium: Playwright's own browser downloads are never used.
      executablePath: process.env["VIREO_TEST_CHROMIUM"] ?? "/usr/bin/chromium",
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
    },
  },
});
