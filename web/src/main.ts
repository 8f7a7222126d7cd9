// Entry point: decide between the sign-in page and the app, and switch when the daemon
// refuses the token.

import { ApiError, api, setUnauthorizedHandler } from "./api";
import { alert, errorText, focusHeading, h, setTitle } from "./dom";
import { followEvents } from "./events";
import { networksPage } from "./pages/networks";
import { overviewPage } from "./pages/overview";
import { signInPage } from "./pages/signin";
import { storagePage } from "./pages/storage";
import { vmConsolePage, vmDisplayPage } from "./pages/vm-consoles";
import { vmListPage } from "./pages/vm-list";
import { vmNewPage } from "./pages/vm-new";
import { vmSnapshotsPage } from "./pages/vm-snapshots";
import { vmSummaryPage } from "./pages/vm-summary";
import { type Route, href, startRouter } from "./router";
import { forgetToken, token } from "./session";

const routes: Route[] = [
  { path: "/", render: overviewPage },
  { path: "/vms", render: vmListPage },
  { path: "/vms/+new", render: vmNewPage },
  { path: "/vms/:name", render: vmSummaryPage },
  { path: "/vms/:name/console", render: vmConsolePage },
  { path: "/vms/:name/display", render: vmDisplayPage },
  { path: "/vms/:name/snapshots", render: vmSnapshotsPage },
  { path: "/storage", render: storagePage },
  { path: "/networks", render: networksPage },
];

const SECTIONS: [path: string, label: string][] = [
  ["/", "Overview"],
  ["/vms", "Virtual machines"],
  ["/storage", "Storage"],
  ["/networks", "Networks"],
];

/** Aborts when the signed-in app goes away: stops the event stream, the router and the page. */
let session: AbortController | null = null;

function showApp(): void {
  session?.abort();
  const controller = new AbortController();
  session = controller;

  const links = SECTIONS.map(([path, label]) => h("a", { href: href(path) }, label));
  const signOut = h("button", { type: "button", class: "secondary", onclick: () => {
    forgetToken();
    showSignIn();
  } }, "Sign out");
  const main = h("main", { id: "main" });
  document.body.replaceChildren(
    h("a", { class: "skip-link", href: "#main", onclick: (event: Event) => {
      // The fragment is the router's, so move focus by hand instead of following the link.
      event.preventDefault();
      focusHeading(main);
    } }, "Skip to content"),
    h(
      "header",
      { class: "top" },
      h("a", { class: "brand", href: href("/") }, "Vireo"),
      h("nav", { "aria-label": "Main" }, h("ul", {}, ...links.map((link) => h("li", {}, link)))),
      signOut,
    ),
    main,
  );

  const markCurrent = (path: string) => {
    SECTIONS.forEach(([section], index) => {
      const current = section === "/" ? path === "/" : path === section || path.startsWith(`${section}/`);
      if (current) links[index]?.setAttribute("aria-current", "page");
      else links[index]?.removeAttribute("aria-current");
    });
  };
  void followEvents(controller.signal);
  startRouter(routes, main, markCurrent, controller.signal);
}

function showSignIn(): void {
  session?.abort();
  session = null;
  document.body.replaceChildren(signInPage(showApp));
}

function showUnreachable(error: unknown): void {
  setTitle("Cannot reach the daemon");
  document.body.replaceChildren(
    h(
      "main",
      { class: "narrow" },
      h("h1", {}, "Cannot reach the Vireo daemon"),
      alert(errorText(error)),
      h("button", { type: "button", onclick: () => void start() }, "Try again"),
    ),
  );
}

async function start(): Promise<void> {
  // No bare probe without a token: over TCP it would be refused, and the browser logs every
  // refused request as a console error. Behind a local proxy to the Unix socket any token
  // passes (the socket's file permissions guard it).
  if (token() === null) {
    showSignIn();
    return;
  }
  try {
    await api.host();
    showApp();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showUnreachable(error);
  }
}

setUnauthorizedHandler(showSignIn);
void start();
