// Sign-in: the only page shown until the daemon accepts a token.

import { ApiError, api } from "../api";
import { field, h, messageSlot, setTitle, whileBusy } from "../dom";
import { clearFieldErrors, showFieldError } from "../forms";
import { keepToken } from "../session";

/** RFC 6455's subprotocol characters (an RFC 7230 token). */
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function signInPage(onSignedIn: () => void): HTMLElement {
  setTitle("Sign in");
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "current-password",
    spellcheck: false,
  });
  const button = h("button", { type: "submit" }, "Sign in");
  const message = messageSlot();
  const form = h(
    "form",
    { class: "stack" },
    message.element,
    // Password managers (and Chrome's form checks) expect a user name beside a password.
    h("input", { type: "text", name: "username", autocomplete: "username", value: "vireo", hidden: true }),
    field(
      "API token",
      input,
      "The daemon keeps it in the file api-token of its data directory (e.g. /var/lib/vireo/api-token).",
    ),
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message.clear();
    clearFieldErrors(form);
    const candidate = input.value.trim();
    if (candidate === "") {
      message.show("Enter the API token.");
      input.focus();
      return;
    }
    if (!TOKEN_CHARS.test(candidate)) {
      // The consoles pass the token as a WebSocket subprotocol, which allows no other characters.
      showFieldError(input, "This is not an API token: it holds letters, digits and !#$%&'*+-.^_`|~ only.");
      input.select();
      input.focus();
      return;
    }
    void whileBusy(
      button,
      async () => {
        await api.host({ token: candidate });
        keepToken(candidate);
        onSignedIn();
      },
      (error) => {
        const refused = error instanceof ApiError && error.status === 401;
        message.show(refused ? "The daemon refused this token." : error);
        input.select();
        input.focus();
      },
    );
  });
  return h("main", { class: "narrow signin" }, h("h1", {}, "Sign in to Vireo"), form);
}
