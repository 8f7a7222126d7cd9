#!/usr/bin/env bash
# Build the web console (web/src) into web/dist, which is committed: the vireo binary
# embeds web/dist at compile time (crates/vireo-web), so building Vireo needs no node.
# Run this after changing anything under web/src and commit web/dist with it.
#
#   scripts/build-web.sh            typecheck (app and browser tests), then rebuild web/dist
#   scripts/build-web.sh --check    typecheck, build into a temporary directory and fail
#                                   if web/dist differs from it (CI: dist is stale)
#
# Installs web/node_modules with `npm ci` when missing or older than package-lock.json.
# See docs/web.md.
set -euo pipefail
cd "$(dirname "$0")/../web"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: scripts/build-web.sh [--check]" >&2; exit 2 ;;
esac

if [[ ! -d node_modules || package-lock.json -nt node_modules ]]; then
  npm ci --no-audit --no-fund
  # npm ci leaves the directory's mtime alone when nothing changed; mark it current.
  touch node_modules
fi

npx --no-install tsc --noEmit
# The browser tests too: Playwright only strips their types, it never checks them.
npx --no-install tsc --noEmit -p tests

if ! $check; then
  node build.mjs
  exit 0
fi

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
node build.mjs --outdir "$fresh/dist"
if ! diff -r "$fresh/dist" dist >/dev/null; then
  echo "web/dist is stale: run scripts/build-web.sh and commit it" >&2
  exit 1
fi
