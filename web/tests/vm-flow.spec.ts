// One VM's life through the browser, in order: create it with the form (an invalid value
// first), watch the list follow its start, use its serial console, see its charts, take
// and drop a snapshot, stop and delete it. The steps share one page and one VM, so a
// failed step skips the rest.

import type { Page } from "@playwright/test";
import { api, ApiFailure, ConsoleWatch, destroyVm, expect, guestSpec, screenshot, signIn, test, type Vm } from "./fixtures";
import { daemon, guest } from "./daemon";

const vm = "webflow";
// Snapshots live inside qcow2 images, so the VM gets a qcow2 volume as its disk.
const disk = "webflow-disk";
// A network of its own, for a NIC that gets an address (scripts/test-web.sh runs all
// of this in a network namespace of its own).
const network = "webflownet";
const subnet = "10.241.18";

test.describe.configure({ mode: "serial" });

let page: Page;
let watch: ConsoleWatch;

test.beforeAll(async ({ browser }) => {
  await destroyVm(vm);
  await api("DELETE", `/v1/pools/default/volumes/${disk}`).catch(() => undefined);
  await api("POST", "/v1/pools/default/volumes", { name: disk, size: "64MiB", format: "qcow2" });
  await api("DELETE", `/v1/networks/${network}`).catch(() => undefined);
  await api("POST", "/v1/networks", { name: network, mode: "isolated", subnet: `${subnet}.0/24` });
  page = await browser.newPage({ baseURL: daemon.url });
  watch = new ConsoleWatch(page);
  await signIn(page);
});

test.afterEach(() => watch.check());

test.afterAll(async () => {
  await page?.close();
  await destroyVm(vm);
  await api("DELETE", `/v1/pools/default/volumes/${disk}`).catch(() => undefined);
  await api("DELETE", `/v1/networks/${network}`).catch(() => undefined);
});

const row = () => page.locator(`tr[data-vm="${vm}"]`);
const state = () => page.locator('[data-testid="vm-state"]').first();

test("create a VM through the form: the API's error shows at its field, then the fixed form creates it", async () => {
  await page.goto("/#/vms");
  await expect(page.getByRole("heading", { level: 1, name: "Virtual machines" })).toBeVisible();
  await page.getByRole("link", { name: "New VM" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "New virtual machine" })).toBeVisible();

  const { kernel, initrd } = guest();
  const name = page.getByLabel("Name", { exact: true });
  await name.fill("web flow");
  await page.getByLabel("vCPUs").fill("1");
  await page.getByLabel("Memory (MiB)").fill("128");
  await page.getByLabel("Kernel", { exact: true }).fill(kernel);
  await page.getByLabel("Initrd").fill(initrd);
  await page.getByLabel("Kernel command line").fill("console=ttyS0");
  await page.getByLabel("Disk").selectOption(`default/${disk}`);
  await page.getByLabel("Network").selectOption(network);

  // What the daemon says of that name, to compare with what the form shows.
  const refusal = await api("POST", "/v1/vms", guestSpec("web flow")).then(
    () => {
      throw new Error("the daemon accepted a name with a space");
    },
    (error: unknown) => {
      if (!(error instanceof ApiFailure)) throw error;
      return error.body;
    },
  );
  expect(refusal.field).toBe("name");

  await watch.allowing(422, async () => {
    await page.getByRole("button", { name: "Create VM" }).click();
    await expect(name).toHaveAttribute("aria-invalid", "true");
  });
  // The message is the element right after the input, and the input names it.
  const message = name.locator("xpath=following-sibling::*[1]");
  await expect(message).toBeVisible();
  await expect(message).toContainText(refusal.message ?? "");
  const messageId = await message.getAttribute("id");
  expect(messageId, "the message has an id for aria-describedby").toBeTruthy();
  expect((await name.getAttribute("aria-describedby"))?.split(/\s+/)).toContain(messageId);
  // Nothing was created.
  await expect(api("GET", `/v1/vms/${vm}`)).rejects.toMatchObject({ status: 404 });
  await screenshot(page, "04-create-form-field-error");

  await name.fill(vm);
  await page.getByRole("button", { name: "Create VM" }).click();
  await expect(page).toHaveURL(new RegExp(`#/vms/${vm}$`));
  await expect(page.getByRole("heading", { level: 1, name: vm })).toBeVisible();
  await expect(state()).toHaveText("stopped");
  await expect(name).toHaveCount(0);

  const created = await api<Vm>("GET", `/v1/vms/${vm}`);
  expect(created.spec.boot?.cmdline).toBe("console=ttyS0");
  expect((created.spec.disks ?? []).map((d) => d.volume)).toEqual([`default/${disk}`]);
  expect(created.nics.map((nic) => nic.network)).toEqual([network]);
});

test("the VM list shows the VM start without a reload", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Virtual machines" }).click();
  await expect(row().getByRole("link", { name: vm })).toBeVisible();
  await expect(row().getByTestId("vm-state")).toHaveText("stopped");
  // A reload would drop this mark.
  await page.evaluate(() => ((window as unknown as { vireoTestMark: boolean }).vireoTestMark = true));
  await screenshot(page, "03-vm-list");

  await api("POST", `/v1/vms/${vm}/start`);
  await expect(row().getByTestId("vm-state")).toHaveText("running");
  expect(await page.evaluate(() => (window as unknown as { vireoTestMark?: boolean }).vireoTestMark)).toBe(true);
});

test("the serial console runs a command in the guest", async () => {
  await row().getByRole("link", { name: vm }).click();
  await page.getByRole("navigation", { name: "VM sections" }).getByRole("link", { name: "Serial console" }).click();
  await expect(page).toHaveURL(new RegExp(`#/vms/${vm}/console$`));
  const consoleBox = page.getByTestId("serial-console");
  await expect(consoleBox.getByTestId("console-status")).toHaveText("connected");
  const rows = consoleBox.locator(".xterm-rows");
  const terminal = consoleBox.locator(".xterm");

  // Output before the socket opened is not replayed: ask for a fresh prompt until the
  // guest has booted far enough to print one.
  await terminal.click();
  await expect(async () => {
    await page.keyboard.press("Enter");
    await expect(rows).toContainText("guest#", { timeout: 3_000 });
  }).toPass({ timeout: 120_000 });

  await page.keyboard.type("echo $((6*7))");
  await page.keyboard.press("Enter");
  // The typed line shows "6*7"; only the guest's answer is a line of its own saying 42.
  await expect(rows.locator(":scope > div", { hasText: /^\s*42\s*$/ })).toHaveCount(1);
  await screenshot(page, "06-serial-console");

  // The terminal follows the window: a shorter window gives fewer rows, a narrower one a
  // narrower screen; the old size gives them back.
  const size = page.viewportSize()!;
  const measure = async () => ({
    rows: await rows.locator(":scope > div").count(),
    width: (await consoleBox.locator(".xterm-screen").boundingBox())?.width ?? 0,
  });
  const before = await measure();
  await page.setViewportSize({ width: Math.round(size.width * 0.7), height: Math.round(size.height * 0.8) });
  await expect.poll(async () => (await measure()).rows).toBeLessThan(before.rows);
  await expect.poll(async () => (await measure()).width).toBeLessThan(before.width);
  await page.setViewportSize(size);
  await expect.poll(measure).toEqual(before);
});

test("the serial console pastes with Ctrl+Shift+V and copies with Ctrl+Shift+C", async () => {
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: daemon.url });
  const consoleBox = page.getByTestId("serial-console");
  const rows = consoleBox.locator(".xterm-rows");
  await consoleBox.locator(".xterm").click();

  await page.evaluate(() => navigator.clipboard.writeText("echo pasted-$((40+2))"));
  await page.keyboard.press("Control+Shift+V");
  await page.keyboard.press("Enter");
  const answer = rows.locator(":scope > div", { hasText: /^\s*pasted-42\s*$/ });
  await expect(answer).toHaveCount(1);

  // Select the guest's answer with a double click on its first letters (xterm selects the
  // word; the click goes to xterm's screen layer above the rows, hence force), then copy.
  await answer.dblclick({ force: true, position: { x: 12, y: 6 } });
  await page.keyboard.press("Control+Shift+C");
  await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe("pasted-42");
});

test("the CPU chart draws the VM's samples", async () => {
  await page.getByRole("navigation", { name: "VM sections" }).getByRole("link", { name: "Summary" }).click();
  const cpu = page.locator('figure[data-testid="chart-cpu"]');
  await expect(cpu).toBeVisible();
  await expect
    .poll(async () => Number(await cpu.getAttribute("data-points")), { timeout: 60_000 })
    .toBeGreaterThanOrEqual(2);
  for (const chart of ["chart-memory", "chart-disk", "chart-network"]) {
    await expect(page.locator(`figure[data-testid="${chart}"]`)).toBeVisible();
  }
  await screenshot(page, "05-vm-detail-charts");
});

test("the summary shows the address the NIC leased", async () => {
  const nic = page.locator("tr[data-mac]");
  await expect(nic).toHaveCount(1);
  await expect(nic).toContainText(network);
  // The guest asks for DHCP once its NIC is up; no reload: the page looks again by itself.
  await expect(nic).toContainText(new RegExp(`${subnet.replaceAll(".", "\\.")}\\.\\d+`), { timeout: 60_000 });
  const leased = (await api<Vm>("GET", `/v1/vms/${vm}`)).nics[0]?.ip;
  expect(leased).toBeTruthy();
  await expect(nic).toContainText(leased ?? "");
});

test("a snapshot is created, listed, reverted to and deleted, each after confirmation", async () => {
  await page.getByRole("navigation", { name: "VM sections" }).getByRole("link", { name: "Snapshots" }).click();
  await expect(page).toHaveURL(new RegExp(`#/vms/${vm}/snapshots$`));
  await page.getByLabel("Snapshot name").fill("first");
  await page.getByRole("button", { name: "Create snapshot" }).click();
  const snapshot = page.locator('tr[data-snapshot="first"]');
  await expect(snapshot).toBeVisible({ timeout: 120_000 });
  expect((await api<{ name: string }[]>("GET", `/v1/vms/${vm}/snapshots`)).map((s) => s.name)).toEqual(["first"]);
  await screenshot(page, "07-snapshots");

  // Revert asks first; confirmed, the VM goes back to the snapshot and runs on.
  await snapshot.getByRole("button", { name: "Revert" }).click();
  const revert = page.getByRole("dialog", { name: `Revert ${vm} to first?` });
  await revert.getByRole("button", { name: "Revert" }).click();
  await expect(revert).toBeHidden({ timeout: 120_000 });
  const events = await api<{ kind: string; details: { snapshot?: string } }[]>("GET", `/v1/events?vm=${vm}`);
  expect(events.filter((e) => e.kind === "snapshot.reverted").map((e) => e.details.snapshot)).toEqual(["first"]);
  await expect(state()).toHaveText("running");

  // Delete asks too: Cancel keeps the snapshot.
  await snapshot.getByRole("button", { name: "Delete" }).click();
  const remove = page.getByRole("dialog", { name: "Delete snapshot first?" });
  await remove.getByRole("button", { name: "Cancel" }).click();
  await expect(remove).toBeHidden();
  await expect(snapshot).toBeVisible();
  await snapshot.getByRole("button", { name: "Delete" }).click();
  await remove.getByRole("button", { name: "Delete" }).click();
  await expect(snapshot).toHaveCount(0, { timeout: 60_000 });
  expect(await api<unknown[]>("GET", `/v1/vms/${vm}/snapshots`)).toEqual([]);
});

test("the VM is stopped, then deleted after confirmation, and leaves the list", async () => {
  await page.getByRole("navigation", { name: "VM sections" }).getByRole("link", { name: "Summary" }).click();
  const remove = page.getByRole("button", { name: "Delete", exact: true });
  await expect(remove).toBeDisabled();
  await page.getByRole("button", { name: "Stop", exact: true }).click();
  await expect(state()).toHaveText("stopped", { timeout: 90_000 });

  await remove.click();
  const dialog = page.getByRole("dialog");
  await expect(dialog).toBeVisible();
  // Cancel keeps it.
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await expect(dialog).toBeHidden();
  expect((await api<Vm>("GET", `/v1/vms/${vm}`)).name).toBe(vm);

  await remove.click();
  await dialog.getByRole("button", { name: "Delete" }).click();
  await expect(page).toHaveURL(/#\/vms$/);
  await expect(page.getByRole("heading", { level: 1, name: "Virtual machines" })).toBeVisible();
  await expect(row()).toHaveCount(0);
  await expect(api("GET", `/v1/vms/${vm}`)).rejects.toMatchObject({ status: 404 });
});
