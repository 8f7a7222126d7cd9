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
    dialog.addEventListener("close", () => finish(false));
    // While the action runs, Escape must not close the dialog: its outcome (an error to
    // show, or success) would have nowhere to go.
    dialog.addEventListener("cancel", (event) => {
      if (cancel.disabled) event.preventDefault();
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
