#!/usr/bin/env bash
# The demo: installs what is missing, builds vireo, starts a daemon on the
# default data directory (unless one runs already), and boots a small demo VM
# whose serial console you then see. Detach from the console with Ctrl-].
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
guest=$(scripts/build-test-guest.sh | tail -1)
cargo build --release --locked -p vireo >&2
vireo=$PWD/target/release/vireo

if ! "$vireo" vm list >/dev/null 2>&1; then
	data_dir=${VIREO_DATA_DIR:-}
	args=(serve)
	[[ -n $data_dir ]] && args+=(--data-dir "$data_dir")
	log=${TMPDIR:-/tmp}/vireo-demo-daemon.log
	echo "demo: starting the daemon (log: $log)" >&2
	nohup "$vireo" "${args[@]}" >"$log" 2>&1 &
	for _ in $(seq 200); do
		"$vireo" vm list >/dev/null 2>&1 && break
		sleep 0.05
	done
fi

if ! "$vireo" vm show demo >/dev/null 2>&1; then
	"$vireo" vm create demo --vcpus 1 --memory 256MiB \
		--kernel "$guest/vmlinuz" --initrd "$guest/initramfs.img" --cmdline "console=ttyS0 quiet"
fi
state=$("$vireo" vm show demo -o json | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)
[[ $state == running ]] || "$vireo" vm start demo
"$vireo" vm list

if [[ -t 0 ]]; then
	echo "demo: attaching to the console; type commands, Ctrl-] to detach" >&2
	"$vireo" vm console demo
else
	for _ in $(seq 600); do
		"$vireo" vm logs demo | grep -q VIREO-TEST-GUEST-READY && break
		sleep 0.1
	done
	"$vireo" vm logs demo
fi
cat >&2 <<'EOT'
demo: the VM keeps running. Try:
  vireo vm list | vireo vm console demo | vireo vm stop demo | vireo vm delete demo
EOT
