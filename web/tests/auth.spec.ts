// Signing in: the token is the only door to the app.

import { daemon } from "./daemon";
import { expect, screenshot, signIn, test } from "./fixtures";

test("a wrong token is refused and shows nothing of the app", async ({ page, watch }) => {
  await page.goto("/");
  await expect(page.getByRole("heading", { level: 1, name: "Sign in to Vireo" })).toBeVisible();
  await screenshot(page, "01-sign-in");

  await watch.allowing(401, async () => {
    await page.getByLabel("API token").fill(`${daemon.token}-wrong`);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert")).toContainText("refused");
  });
  await expect(page.getByRole("navigation", { name: "Main" })).toHaveCount(0);
  await expect(page.getByRole("heading", { level: 1, name: "Sign in to Vireo" })).toBeVisible();
  await expect(page.getByRole("table")).toHaveCount(0);
  expect(await page.evaluate(() => sessionStorage.length), "a refused token is not kept").toBe(0);

  // Something that cannot be a token (the consoles would fail on it) is refused before any request.
  let requests = 0;
  page.on("request", (request) => {
    if (new URL(request.url()).pathname.startsWith("/v1/")) requests += 1;
  });
  await page.getByLabel("API token").fill("not a token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByLabel("API token")).toHaveAccessibleDescription(/not an API token/);
  expect(requests).toBe(0);

  // A hash route does not get past the sign-in page either.
  await page.goto("/#/vms");
  await expect(page.getByRole("heading", { level: 1, name: "Sign in to Vireo" })).toBeVisible();
  await expect(page.getByRole("heading", { name: "Virtual machines" })).toHaveCount(0);
});

test("the right token opens the overview, and signing out closes it", async ({ page }) => {
  await signIn(page);
  await expect(page.getByRole("heading", { level: 1, name: "Overview" })).toBeVisible();
  const nav = page.getByRole("navigation", { name: "Main" });
  for (const [name, href] of [
    ["Overview", "#/"],
    ["Virtual machines", "#/vms"],
    ["Storage", "#/storage"],
    ["Networks", "#/networks"],
  ]) {
    await expect(nav.getByRole("link", { name, exact: true })).toHaveAttribute("href", href);
  }
  // The overview reports the host the daemon runs on.
  const host = await fetch(`${daemon.url}/v1/host`, { headers: { authorization: `Bearer ${daemon.token}` } });
  const { hostname } = (await host.json()) as { hostname: string };
  await expect(page.getByRole("main")).toContainText(hostname);
  await screenshot(page, "02-overview");

  // The token lives in this tab only; a reload keeps the session.
  await page.reload();
  await expect(page.getByRole("heading", { level: 1, name: "Overview" })).toBeVisible();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Sign in to Vireo" })).toBeVisible();
  await expect(page.getByRole("navigation", { name: "Main" })).toHaveCount(0);
});
