#!/usr/bin/env bash
# The whole test suite: unit tests, router tests and end-to-end tests that
# boot real guests under QEMU. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
VIREO_TEST_GUEST_DIR=$(scripts/build-test-guest.sh | tail -1)
export VIREO_TEST_GUEST_DIR
cargo test --workspace --locked --no-fail-fast "$@"
