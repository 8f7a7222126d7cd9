// Building DOM by hand: one element helper and the few pieces every page repeats.

export type Child = Node | string | number | null | undefined | false;
type Attr = string | number | boolean | null | undefined;
/** Attributes, and `on<event>` listeners (`onclick`, `onsubmit`, ...). */
export type Attrs = Record<string, Attr | ((event: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Moves focus to the page's heading, so screen readers announce where the user is. */
export function focusHeading(container: HTMLElement): void {
  const heading = container.querySelector("h1");
  if (!heading) return;
  heading.tabIndex = -1;
  heading.focus();
}

export function setTitle(page: string): void {
  document.title = `${page} · Vireo`;
}

/** A message that screen readers announce at once: the API's words when it refused something. */
export function alert(message: string): HTMLParagraphElement {
  return h("p", { role: "alert", class: "error" }, message);
}

/** An element whose content is swapped for an alert, a note or nothing. */
export function messageSlot(): { element: HTMLDivElement; show(error: unknown): void; clear(): void } {
  const element = h("div", { class: "message-slot" });
  return {
    element,
    show(error: unknown) {
      element.replaceChildren(alert(errorText(error)));
    },
    clear() {
      element.replaceChildren();
    },
  };
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function empty(text: string): HTMLParagraphElement {
  return h("p", { class: "empty" }, text);
}

/**
 * A table in a region that scrolls sideways on narrow screens; the region is focusable
 * so keyboard users can scroll it too.
 */
export function table(
  label: string,
  headers: string[],
  rows: HTMLTableRowElement[] | HTMLTableSectionElement,
): HTMLDivElement {
  return h(
    "div",
    { class: "table-scroll", role: "region", "aria-label": label, tabindex: 0 },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...headers.map((header) => h("th", { scope: "col" }, header)))),
      Array.isArray(rows) ? h("tbody", {}, ...rows) : rows,
    ),
  );
}

let sections = 0;

/** A titled section: an `h2` that names it, then `content`; `attrs` go on the section. */
export function section(title: string, attrs: Attrs, ...content: Child[]): HTMLElement {
  sections += 1;
  const id = `section-${sections}`;
  return h("section", { ...attrs, "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

let rowHeaders = 0;

/**
 * A row's header cell and the buttons of that row: each button is described by the
 * header, so a screen reader tells "Delete, data.qcow2" from the other rows' "Delete"
 * while the button's name stays "Delete".
 */
export function rowWithButtons(
  header: string,
  buttons: [label: string, className: string, onClick: () => void][],
): { header: HTMLTableCellElement; buttons: HTMLTableCellElement } {
  rowHeaders += 1;
  const id = `row-header-${rowHeaders}`;
  const elements = buttons.map(([label, className, onClick]) => {
    const button = h("button", { type: "button", class: className, "aria-describedby": id }, label);
    button.addEventListener("click", onClick);
    return button;
  });
  return { header: h("th", { scope: "row", id }, header), buttons: h("td", { class: "row-actions" }, ...elements) };
}

export function row(attrs: Attrs, ...cells: Child[]): HTMLTableRowElement {
  return h("tr", attrs, ...cells.map((cell) => (cell instanceof HTMLTableCellElement ? cell : h("td", {}, cell))));
}

/** A description list of label → value; values left out when null. */
export function facts(pairs: [string, Child][]): HTMLDListElement {
  const list = h("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === false || value === "") continue;
    list.append(h("div", {}, h("dt", {}, term), h("dd", {}, value)));
  }
  return list;
}

/** A labelled form control: the label, the control and the slot its field error goes into. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement, hint?: string): HTMLDivElement {
  const wrapper = h("div", { class: "field" }, h("label", { for: control.id }, label), control);
  if (hint) {
    const hintId = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    wrapper.append(h("p", { class: "hint", id: hintId }, hint));
  }
  return wrapper;
}

export function select(id: string, options: [value: string, label: string][], selected = ""): HTMLSelectElement {
  return h(
    "select",
    { id, name: id },
    ...options.map(([value, label]) => h("option", { value, selected: value === selected }, label)),
  );
}

/**
 * Runs `action` with `button` disabled and marked busy, so a slow request cannot be
 * sent twice; errors go to `onError`.
 */
export async function whileBusy(
  button: HTMLButtonElement,
  action: () => Promise<void>,
  onError: (error: unknown) => void,
): Promise<void> {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await action();
  } catch (error) {
    onError(error);
  } finally {
    button.removeAttribute("aria-busy");
    button.disabled = false;
  }
}
