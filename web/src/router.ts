// Hash routes (`#/vms/web1`): the daemon serves only `/` and `/assets/*`, so the page
// path lives in the fragment.
//
// Each page renders into <main> with an AbortSignal that aborts when the user leaves:
// pages hang their timers, event listeners, requests and consoles on it.

import { ApiError } from "./api";
import { alert, errorText, focusHeading, h, setTitle } from "./dom";

export type Params = Record<string, string>;
export type Render = (main: HTMLElement, params: Params, signal: AbortSignal) => void | Promise<void>;

export interface Route {
  /** e.g. `/vms/:name/console`; a `:param` matches one path segment. */
  path: string;
  render: Render;
}

interface Compiled {
  pattern: RegExp;
  keys: string[];
  render: Render;
}

function compile(route: Route): Compiled {
  const keys: string[] = [];
  const literal = route.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const source = literal.replace(/:(\w+)/g, (_, key: string) => {
    keys.push(key);
    return "([^/]+)";
  });
  return { pattern: new RegExp(`^${source}$`), keys, render: route.render };
}

/** The link to a page path, e.g. `href("/vms")`. */
export function href(path: string): string {
  return `#${path}`;
}

export function navigate(path: string): void {
  location.hash = href(path);
}

function currentPath(): string {
  return location.hash.replace(/^#/, "") || "/";
}

/**
 * Renders the page of the current hash into `main`, and again on every change, until
 * `signal` aborts. `onPage` hears each new path (for the main navigation).
 */
export function startRouter(routes: Route[], main: HTMLElement, onPage: (path: string) => void, signal: AbortSignal): void {
  const compiled = routes.map(compile);
  let page: AbortController | null = null;
  let first = true;

  const show = async () => {
    page?.abort();
    const controller = new AbortController();
    page = controller;
    const path = currentPath();
    onPage(path);
    main.replaceChildren();
    const moveFocus = !first;
    first = false;
    try {
      const [render, params] = match(compiled, path);
      await render(main, params, controller.signal);
      // After a click on a link, focus goes to the new page's heading so screen readers
      // announce it; on first load it stays at the top of the document.
      if (moveFocus && !controller.signal.aborted) focusHeading(main);
    } catch (error) {
      if (controller.signal.aborted || (error instanceof ApiError && error.status === 401)) return;
      setTitle("Error");
      main.replaceChildren(h("h1", {}, "Cannot show this page"), alert(errorText(error)));
    }
  };

  window.addEventListener("hashchange", show, { signal });
  signal.addEventListener("abort", () => page?.abort(), { once: true });
  void show();
}

function match(routes: Compiled[], path: string): [Render, Params] {
  for (const route of routes) {
    const found = route.pattern.exec(path);
    if (!found) continue;
    const params: Params = {};
    route.keys.forEach((key, index) => {
      params[key] = decodeURIComponent(found[index + 1] ?? "");
    });
    return [route.render, params];
  }
  return [notFound, {}];
}

function notFound(main: HTMLElement): void {
  setTitle("Not found");
  main.append(
    h("h1", {}, "Page not found"),
    h("p", {}, "There is no page at this address. ", h("a", { href: href("/") }, "Go to the overview"), "."),
  );
}
