// The pages around the VMs: storage and networks, and the layout on a phone.

import { api, expect, screenshot, signIn, test } from "./fixtures";

test.describe("storage and networks", () => {
  const volume = "pages-vol";

  test.beforeAll(async () => {
    await api("POST", "/v1/pools/default/volumes", { name: volume, size: "64MiB", format: "qcow2" });
  });

  test.afterAll(async () => {
    await api("DELETE", `/v1/pools/default/volumes/${volume}`).catch(() => undefined);
  });

  test("storage lists the pools and their volumes", async ({ page }) => {
    await signIn(page, "#/storage");
    await expect(page.getByRole("heading", { level: 1, name: "Storage" })).toBeVisible();
    await expect(page.locator('tr[data-pool="default"]')).toBeVisible();
    await expect(page.locator(`tr[data-volume="default/${volume}"]`)).toBeVisible();
    await screenshot(page, "08-storage");
  });

  test("networks lists the networks", async ({ page }) => {
    const network = "pagesnet";
    await api("POST", "/v1/networks", { name: network, mode: "isolated", subnet: "10.241.17.0/24" });
    try {
      await signIn(page, "#/networks");
      await expect(page.getByRole("heading", { level: 1, name: "Networks" })).toBeVisible();
      await expect(page.locator(`tr[data-network="${network}"]`)).toBeVisible();
      await screenshot(page, "09-networks");
    } finally {
      await api("DELETE", `/v1/networks/${network}`);
    }
  });
});

test.describe("on a phone", () => {
  test.use({ viewport: { width: 375, height: 740 } });

  test("the VM list fits a 375 px screen", async ({ page }) => {
    await signIn(page, "#/vms");
    await expect(page.getByRole("heading", { level: 1, name: "Virtual machines" })).toBeVisible();
    await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
    // No sideways scrolling of the whole page (a wide table may scroll inside its own box).
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow, "page wider than the screen").toBeLessThanOrEqual(0);
    await screenshot(page, "10-phone-vm-list");
  });
});
