// Confirmation before something that cannot be undone, in a modal <dialog>: it traps
// focus, closes on Escape and makes the page behind it inert.

import { alert, errorText, h, whileBusy } from "./dom";

export interface Confirmation {
  title: string;
  text: string;
  /** The confirm button's label, e.g. "Delete". */
  confirm: string;
  /** Runs on confirm; if it throws, its message shows in the dialog, which stays open. */
  action: () => Promise<void>;
  /** Closes the dialog when the page it belongs to goes away. */
  signal: AbortSignal;
}

let dialogs = 0;

/**
 * Asks, then reloads the list the confirmed action changed. The button that was clicked
 * goes with the reload, so focus moves to the list (its table region, or else the page's
 * heading). A failed reload shows through `show`, unless the page was left.
 */
export function confirmThenReload(
  options: Confirmation,
  reload: () => Promise<void>,
  list: HTMLElement,
  show: (error: unknown) => void,
): void {
  confirmDialog(options)
    .then(async (done) => {
      if (!done) return;
      await reload();
      (list.querySelector<HTMLElement>("[role=region]") ?? document.querySelector<HTMLElement>("h1"))?.focus();
    })
    .catch((error: unknown) => {
      if (!options.signal.aborted) show(error);
    });
}

/** Resolves true once the action succeeded, false when cancelled. */
export function confirmDialog(options: Confirmation): Promise<boolean> {
  dialogs += 1;
  const titleId = `dialog-title-${dialogs}`;
  const textId = `dialog-text-${dialogs}`;
  const message = h("div", { class: "message-slot" });
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
  const confirm = h("button", { type: "button", class: "danger" }, options.confirm);
  const dialog = h(
    "dialog",
    { "aria-labelledby": titleId, "aria-describedby": textId },
    h("h2", { id: titleId }, options.title),
    h("p", { id: textId }, options.text),
    message,
    h("div", { class: "actions" }, cancel, confirm),
  );

  return new Promise((resolve) => {
    let done = false;
    const finish = (confirmed: boolean) => {
      if (done) return;
      done = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      resolve(confirmed);
    };
    // While the action runs, Escape must not close the dialog: its outcome (an error to
    // show, or success) would have nowhere to go.
    dialog.addEventListener("cancel", (event) => {
      if (cancel.disabled) event.preventDefault();
    });
    dialog.addEventListener("close", () => {
      // Chrome lets a second Escape with no click or key in between close it anyway.
      if (!done && cancel.disabled) dialog.showModal();
      else finish(false);
    });
    cancel.addEventListener("click", () => finish(false));
    confirm.addEventListener("click", () => {
      message.replaceChildren();
      cancel.disabled = true;
      void whileBusy(
        confirm,
        async () => {
          await options.action();
          finish(true);
        },
        (error) => message.replaceChildren(alert(errorText(error))),
      ).finally(() => {
        cancel.disabled = false;
      });
    });
    options.signal.addEventListener("abort", () => finish(false), { once: true });
    document.body.append(dialog);
    dialog.showModal();
  });
}
