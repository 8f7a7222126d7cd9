// The API token of this tab. sessionStorage, not localStorage: the token is as good as
// root on the host, so it should not outlive the tab or reach other tabs.

const KEY = "vireo.token";

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

export function keepToken(value: string): void {
  sessionStorage.setItem(KEY, value);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
