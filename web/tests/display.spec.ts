// The graphical console: noVNC on a VM with a standard VGA display.

import { api, destroyVm, expect, guestSpec, screenshot, signIn, test } from "./fixtures";

const vm = "webdisplay";

test.beforeAll(async () => {
  await destroyVm(vm);
  // The kernel's log on the screen too (tty0); the shell stays on the serial line (ttyS0, last).
  const spec = guestSpec(vm, { display: { vga: "std" } });
  const boot = spec["boot"] as Record<string, unknown>;
  await api("POST", "/v1/vms", { ...spec, boot: { ...boot, cmdline: "console=tty0 console=ttyS0" } });
  await api("POST", `/v1/vms/${vm}/start`);
});

test.afterAll(async () => {
  await destroyVm(vm);
});

test("the Display page connects noVNC and draws the guest's screen", async ({ page }) => {
  await signIn(page, `#/vms/${vm}`);
  await page.getByRole("navigation", { name: "VM sections" }).getByRole("link", { name: "Display" }).click();
  await expect(page).toHaveURL(new RegExp(`#/vms/${vm}/display$`));
  const display = page.getByTestId("vnc-console");
  await expect(display.getByTestId("console-status")).toHaveText("connected");
  const canvas = display.locator("canvas");
  await expect(canvas).toHaveCount(1);
  // The canvas takes the framebuffer's size once the server has described it.
  await expect
    .poll(async () => {
      const box = await canvas.boundingBox();
      return box ? Math.min(box.width, box.height) : 0;
    })
    .toBeGreaterThan(0);
  // Something of the guest's framebuffer arrived: the canvas is not one flat colour (even a
  // guest that has not set a video mode yet gets QEMU's text saying so).
  await expect
    .poll(() =>
      canvas.evaluate((element: HTMLCanvasElement) => {
        const context = element.getContext("2d");
        if (!context || element.width === 0 || element.height === 0) return 0;
        const pixels = new Uint32Array(context.getImageData(0, 0, element.width, element.height).data.buffer);
        return new Set(pixels).size;
      }),
    )
    .toBeGreaterThan(1);
  await expect(display.getByRole("button", { name: "Send Ctrl+Alt+Del" })).toBeEnabled();
  await screenshot(page, "11-display");

  // Stopping the VM ends the session, and the page says so.
  await api("POST", `/v1/vms/${vm}/stop`, { force: true });
  await expect(page.getByTestId("vm-state").first()).toHaveText("stopped");
  await expect(display.getByTestId("console-status")).toHaveText(/^disconnected/);
});
