// Errors on form fields: the message right after the control, tied to it for screen readers.

import { h } from "./dom";

export function showFieldError(control: HTMLInputElement | HTMLSelectElement, message: string): void {
  const id = `${control.id}-error`;
  control.after(h("p", { class: "field-error", id }, message));
  control.setAttribute("aria-invalid", "true");
  const describedBy = control.getAttribute("aria-describedby");
  control.setAttribute("aria-describedby", describedBy ? `${id} ${describedBy}` : id);
}

export function clearFieldErrors(form: HTMLFormElement): void {
  for (const message of form.querySelectorAll(".field-error")) message.remove();
  for (const control of form.querySelectorAll<HTMLElement>("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
    const rest = (control.getAttribute("aria-describedby") ?? "")
      .split(" ")
      .filter((id) => id !== "" && !id.endsWith("-error"));
    if (rest.length > 0) control.setAttribute("aria-describedby", rest.join(" "));
    else control.removeAttribute("aria-describedby");
  }
}
