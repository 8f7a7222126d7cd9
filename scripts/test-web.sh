#!/usr/bin/env bash
# The web console's browser tests (web/tests, Playwright): builds the app and the vireo
# binary that embeds it, then drives Debian's chromium against a real daemon that boots
# the test guest under QEMU, all inside a network namespace this script creates and
# deletes. Playwright's own browsers are never downloaded. Needs root (ip netns).
#
#   scripts/test-web.sh [playwright test arguments...]    e.g. scripts/test-web.sh vm-flow
#
# Environment: VIREO_TEST_GUEST_DIR (built with scripts/build-test-guest.sh when unset),
# VIREO_TEST_CHROMIUM (default /usr/bin/chromium), VIREO_TEST_KEEP=1 keeps the daemon's
# data directory. Screenshots and perf.json land in web/test-results/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-web.sh
cargo build --locked -p vireo
if [[ -z ${VIREO_TEST_GUEST_DIR:-} ]]; then
	VIREO_TEST_GUEST_DIR=$(scripts/build-test-guest.sh | tail -1)
fi
export VIREO_TEST_GUEST_DIR

cd web
# Keeps Playwright from fetching browsers if anything asks it to.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# The daemon, the browser and the tests run in a network namespace of their own: the
# networks a test creates (bridges, dnsmasq, nftables) never touch the host's network,
# and go with the namespace. The daemon listens on the namespace's loopback.
netns="vireo-web-$$"
ip netns add "$netns"
trap 'ip netns delete "$netns"' EXIT
ip netns exec "$netns" ip link set lo up
ip netns exec "$netns" npx --no-install playwright test "$@"
