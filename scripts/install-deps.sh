#!/usr/bin/env bash
# Installs what Vireo needs to build, run and test on a fresh Debian 12 machine,
# plus any packages named as arguments (scripts/bench.sh adds libvirt's).
# Safe to re-run: it installs only what is missing.
set -euo pipefail

packages=(qemu-system-x86 qemu-utils busybox-static cpio gzip xz-utils zstd sqlite3 procps iproute2 dnsmasq-base nftables prometheus chromium "$@")
# The web console's build and browser tests (scripts/build-web.sh, scripts/test-web.sh) need
# node and npm; a node installed some other way (nvm, nodesource) is left alone.
command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for pkg in "${packages[@]}"; do
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}" >&2
	sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v cargo >/dev/null; then
	echo "install-deps: cargo is missing; install Rust with rustup (https://rustup.rs)" >&2
	exit 1
fi
for component in rustfmt clippy; do
	rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >&2
done
