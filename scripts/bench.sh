#!/usr/bin/env bash
# Runs Vireo's benchmarks and rewrites docs/benchmarks.md with the figures:
# start → marker through the daemon against plain QEMU, the daemon with 1000
# defined VMs, snapshots, save/restore (against raw QMP on a plain QEMU),
# linked clones, live migration between two daemons (against two plain
# QEMUs with QEMU's defaults), and vireo against a private libvirtd (two of
# them for live migration), and vireo's lean machine defaults one at a time.
# Installs what is missing, builds the test guest and the release binaries
# first.
# Extra arguments go to vireo-bench, e.g.
#
#   scripts/bench.sh                 # the real benchmark (several minutes under TCG)
#   scripts/bench.sh --quick         # smoke test: 2 boot runs, 100 VMs, 1 snapshot run, 1 migration, 1 ablation round; does not touch docs/
#
# Machine-readable results: target/vireo-bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# Section 6 runs Debian's libvirtd (libvirt-daemon, with its QEMU driver) and virsh (libvirt-clients),
# privately: libvirt-daemon-system is not needed and not installed, as it would set up a system-wide
# libvirtd (init scripts or systemd units, the libvirt-qemu user, the default NAT network set to
# autostart, polkit rules) and, through libvirt-daemon-system-systemd, upgrade systemd. Neither
# package starts anything or creates anything outside /usr and /etc/libvirt (client configuration).
scripts/install-deps.sh libvirt-daemon libvirt-clients
VIREO_TEST_GUEST_DIR=$(scripts/build-test-guest.sh | tail -1)
export VIREO_TEST_GUEST_DIR
cargo build --release --locked -p vireo -p vireo-bench

bench_args=(--json target/vireo-bench/results.json)
# A quick run is a smoke test: its figures must not replace the real ones.
quick=0
for arg in "$@"; do
	[[ $arg == --quick ]] && quick=1
done
((quick)) || bench_args+=(--write docs/benchmarks.md)

VIREO_BENCH_COMMAND="scripts/bench.sh${*:+ $*}"
# The revision measured: `git describe`, unless the caller knows better (e.g. an export of a commit).
VIREO_BENCH_REVISION=${VIREO_BENCH_REVISION:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
export VIREO_BENCH_COMMAND VIREO_BENCH_REVISION
exec target/release/vireo-bench "${bench_args[@]}" "$@"
