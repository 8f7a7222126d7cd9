// Where global-setup, global-teardown and the tests meet: the environment variables that
// carry the test daemon's facts across Playwright's processes (the runner and its
// workers inherit what global-setup puts in process.env).

import { existsSync } from "node:fs";
import { join } from "node:path";

export const ENV = {
  url: "VIREO_TEST_URL",
  token: "VIREO_TEST_TOKEN",
  dataDir: "VIREO_TEST_DATA_DIR",
  pid: "VIREO_TEST_DAEMON_PID",
  guestDir: "VIREO_TEST_GUEST_DIR",
} as const;

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through scripts/test-web.sh or npx playwright test`);
  return value;
}

export const daemon = {
  get url(): string {
    return required(ENV.url);
  },
  get token(): string {
    return required(ENV.token);
  },
  get dataDir(): string {
    return required(ENV.dataDir);
  },
};

/** The test guest's kernel and initramfs (scripts/build-test-guest.sh). */
export function guest(): { kernel: string; initrd: string } {
  const dir = process.env[ENV.guestDir] ?? "/var/cache/vireo/test-guest";
  const kernel = join(dir, "vmlinuz");
  const initrd = join(dir, "initramfs.img");
  if (!existsSync(kernel) || !existsSync(initrd)) {
    throw new Error(`no test guest in ${dir}: set ${ENV.guestDir} to the directory scripts/build-test-guest.sh prints`);
  }
  return { kernel, initrd };
}
