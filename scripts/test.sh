#!/usr/bin/env bash
# The whole test suite: unit tests, router tests and end-to-end tests that
# boot real guests under QEMU, then the web console's browser tests
# (scripts/test-web.sh). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
VIREO_TEST_GUEST_DIR=$(scripts/build-test-guest.sh | tail -1)
export VIREO_TEST_GUEST_DIR
# The browser tests run even when cargo's fail; the script fails if either did.
status=0
cargo test --workspace --locked --no-fail-fast "$@" || status=$?
scripts/test-web.sh || status=$((status ? status : $?))
exit "$status"
