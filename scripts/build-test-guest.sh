#!/usr/bin/env bash
# Build (or reuse) the tiny Linux test guest used by Vireo's end-to-end tests.
#
#   dir=$(scripts/build-test-guest.sh | tail -1)
#   qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -display none \
#       -serial stdio -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.img" \
#       -append 'console=ttyS0 quiet'
#
# The guest is Debian's cloud kernel plus a gzip'd newc initramfs holding
# busybox-static, a handful of virtio/ACPI modules, scripts/guest/init and the
# guest's helper scripts (power button, NIC hot-plug, DHCP) from scripts/guest/.
# Everything comes from Debian packages (apt-get install / apt-get download).
#
# Output: ${VIREO_TEST_GUEST_DIR:-/var/cache/vireo/test-guest}/{vmlinuz,initramfs.img,stamp}.
# That path is a symlink to a complete build under .test-guest.builds/ beside
# it, swapped atomically, so an interrupted or concurrent build never shows a
# half-written cache. The stamp hashes this script, scripts/guest/* and the
# kernel and busybox package versions; when it matches, the script returns at
# once, offline. Progress goes to stderr; the last stdout line is the path.
# See docs/test-guest.md.
#
# Environment:
#   VIREO_TEST_GUEST_DIR          output directory (default /var/cache/vireo/test-guest)
#   VIREO_TEST_GUEST_KERNEL_META  kernel metapackage (default linux-image-cloud-amd64)
#   VIREO_TEST_GUEST_SKIP_QEMU=1  do not install qemu-system-x86 (the build itself never needs it)
set -euo pipefail

log() { printf 'build-test-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

script=$(readlink -f "${BASH_SOURCE[0]}")
guest_src=$(dirname "$script")/guest
out=$(realpath -ms "${VIREO_TEST_GUEST_DIR:-/var/cache/vireo/test-guest}")
meta_pkg=${VIREO_TEST_GUEST_KERNEL_META:-linux-image-cloud-amd64}

for f in init power-button hotplug udhcpc.script modules; do
	[[ -f $guest_src/$f ]] || die "missing guest file $guest_src/$f"
done
# Busybox applets the guest and the tests rely on (init and the helper scripts,
# networking tests). Checked at build time: a busybox without one is an error.
required_applets=(sh cttyhack setsid stty insmod acpid poweroff sync uevent
	sleep mkdir rmdir cat mv rm kill awk ip ping udhcpc nc ifconfig route hostname wget)

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root)
apt_updated=0

apt_update_once() {
	[[ $apt_updated == 1 ]] && return 0
	[[ $(id -u) == 0 ]] || die "apt-get update needed but not running as root"
	log "apt-get update"
	apt-get "${apt_opts[@]}" update -qq >&2
	apt_updated=1
}

pkg_installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

# candidate_version PKG: the version apt would install/download (empty if unknown).
candidate_version() {
	local v
	v=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
	[[ $v == "(none)" ]] && v=
	printf '%s' "$v"
}

# --- host tools -------------------------------------------------------------
# command -v / dpkg-query only, so a re-run on a ready machine stays offline.
missing=()
command -v cpio >/dev/null || missing+=(cpio)
command -v gzip >/dev/null || missing+=(gzip)
command -v xz >/dev/null || missing+=(xz-utils)
command -v zstd >/dev/null || missing+=(zstd)
if [[ ${VIREO_TEST_GUEST_SKIP_QEMU:-0} != 1 ]]; then
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
fi
# busybox-static conflicts with Debian's dynamic "busybox" package: when that
# one is installed, leave it alone and take busybox-static via apt-get download.
busybox_from=installed
if ! pkg_installed busybox-static; then
	if pkg_installed busybox; then
		busybox_from=download
	else
		missing+=(busybox-static)
	fi
fi
if ((${#missing[@]})); then
	[[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
	# Update first only when apt does not know the packages (fresh machine).
	for p in "${missing[@]}"; do
		[[ -n $(candidate_version "$p") ]] || { apt_update_once; break; }
	done
	log "installing ${missing[*]}"
	apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" >&2
fi

# --- what would be built ----------------------------------------------------
# Resolve the concrete kernel package behind the metapackage from the local
# apt lists: its Depends names linux-image-<abi>-cloud-amd64 (= <version>).
kernel_pkg='' kernel_ver=''
resolve_kernel_pkg() {
	local info dep part
	if [[ $meta_pkg =~ ^linux-image-[0-9] ]]; then # already a concrete package
		kernel_pkg=$meta_pkg
		kernel_ver=$(candidate_version "$meta_pkg")
		return 0
	fi
	info=$(apt-cache show --no-all-versions "$meta_pkg" 2>/dev/null || true)
	dep=$(awk '/^Depends:/ { sub(/^Depends:[ \t]*/, ""); print; exit }' <<<"$info")
	IFS=',' read -ra parts <<<"$dep"
	for part in "${parts[@]}"; do
		if [[ $part =~ ^[[:space:]]*(linux-image-[^[:space:]|(]+)([[:space:]]*\(=[[:space:]]*([^)[:space:]]+)\))? ]]; then
			kernel_pkg=${BASH_REMATCH[1]}
			kernel_ver=${BASH_REMATCH[3]}
			[[ -n $kernel_ver ]] || kernel_ver=$(candidate_version "$kernel_pkg")
			return 0
		fi
	done
}
resolve_kernel_pkg
if [[ -z $kernel_pkg || -z $kernel_ver ]]; then
	apt_update_once
	resolve_kernel_pkg
fi
[[ -n $kernel_pkg ]] || die "cannot resolve the kernel package behind $meta_pkg"
[[ -n $kernel_ver ]] || die "no installable version of $kernel_pkg"

if [[ $busybox_from == installed ]]; then
	busybox_ver=$(dpkg-query -W -f='${Version}' busybox-static)
else
	busybox_ver=$(candidate_version busybox-static)
	[[ -n $busybox_ver ]] || { apt_update_once; busybox_ver=$(candidate_version busybox-static); }
	[[ -n $busybox_ver ]] || die "no installable version of busybox-static"
fi

stamp_inputs=$(
	printf 'format 1\n'
	printf 'script %s\n' "$(sha256sum <"$script" | cut -d' ' -f1)"
	while IFS= read -r -d '' f; do
		printf 'guest/%s %s\n' "${f#"$guest_src"/}" "$(sha256sum <"$f" | cut -d' ' -f1)"
	done < <(find "$guest_src" -type f -print0 | LC_ALL=C sort -z)
	printf 'kernel %s=%s\n' "$kernel_pkg" "$kernel_ver"
	printf 'busybox-static %s\n' "$busybox_ver"
)
stamp_hash=$(sha256sum <<<"$stamp_inputs" | cut -d' ' -f1)

cache_ok() {
	[[ -s $out/vmlinuz && -s $out/initramfs.img && -f $out/stamp ]] \
		&& [[ $(head -n1 "$out/stamp") == "$stamp_hash" ]]
}

if cache_ok; then
	log "up to date: $out ($kernel_pkg $kernel_ver)"
	printf '%s\n' "$out"
	exit 0
fi

# --- build ------------------------------------------------------------------
parent=$(dirname "$out")
mkdir -p "$parent"
exec 9>"$out.lock"
flock 9
if cache_ok; then # another run built it while we waited for the lock
	log "up to date: $out ($kernel_pkg $kernel_ver)"
	printf '%s\n' "$out"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-test-guest.XXXXXX")
newdir=
cleanup() {
	rm -rf "$work"
	[[ -z $newdir ]] || rm -rf "$newdir"
	rm -f "$out.tmp.$$"
}
trap cleanup EXIT
trap "exit 129" HUP
trap "exit 130" INT
trap "exit 143" TERM

log "building in $work"
cd "$work"
log "apt-get download $kernel_pkg=$kernel_ver"
apt-get "${apt_opts[@]}" download -qq "$kernel_pkg=$kernel_ver" >&2
kdeb=("$work"/"$kernel_pkg"_*.deb)
[[ -f ${kdeb[0]} ]] || die "download of $kernel_pkg produced no .deb"
dpkg-deb -x "${kdeb[0]}" "$work/kernel"

vmlinuz=("$work"/kernel/boot/vmlinuz-*)
[[ ${#vmlinuz[@]} == 1 && -f ${vmlinuz[0]} ]] || die "expected one /boot/vmlinuz-* in $kernel_pkg"
kver=${vmlinuz[0]##*/vmlinuz-}
moddir=
for d in "$work/kernel/lib/modules/$kver" "$work/kernel/usr/lib/modules/$kver"; do
	[[ -d $d ]] && moddir=$d && break
done
[[ -n $moddir ]] || die "no modules directory for $kver in $kernel_pkg"
log "kernel $kver from $kernel_pkg $kernel_ver"

if [[ $busybox_from == installed ]]; then
	busybox=$(dpkg-query -L busybox-static | grep -E '/bin/busybox$' | head -n1)
else
	log "apt-get download busybox-static=$busybox_ver"
	apt-get "${apt_opts[@]}" download -qq "busybox-static=$busybox_ver" >&2
	bdeb=("$work"/busybox-static_*.deb)
	dpkg-deb -x "${bdeb[0]}" "$work/busybox-pkg"
	busybox=$work/busybox-pkg/bin/busybox
fi
[[ -x $busybox ]] || die "busybox-static binary not found"

stage=$work/stage
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc/acpi/PWRF,lib/modules}
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"

# busybox and its applet symlinks (made here, so the guest needs no --install).
install -m 0755 "$busybox" "$stage/bin/busybox"
while IFS= read -r applet; do
	[[ -n $applet && ! -e $stage/$applet && ! -L $stage/$applet ]] || continue
	mkdir -p "$(dirname "$stage/$applet")"
	ln -s /bin/busybox "$stage/$applet"
done < <("$busybox" --list-full)
[[ -L $stage/bin/sh ]] || ln -s /bin/busybox "$stage/bin/sh"
missing_applets=()
for a in "${required_applets[@]}"; do
	found=0
	for d in bin sbin usr/bin usr/sbin; do
		[[ -L $stage/$d/$a ]] && found=1 && break
	done
	((found)) || missing_applets+=("$a")
done
((${#missing_applets[@]} == 0)) || die "busybox $busybox_ver lacks applets: ${missing_applets[*]}"

install -m 0755 "$guest_src/init" "$stage/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"
# /etc/hosts is written by /init (it holds the hostname); resolv.conf by the
# udhcpc script. Static glibc (busybox-static) reads hosts, then DNS.
printf 'hosts: files dns\n' >"$stage/etc/nsswitch.conf"
: >"$stage/etc/resolv.conf"
install -m 0755 "$guest_src/power-button" "$stage/etc/acpi/PWRF/00000080"
rm -f "$stage/sbin/hotplug"
install -m 0755 "$guest_src/hotplug" "$stage/sbin/hotplug"
mkdir -p "$stage/usr/share/udhcpc" "$stage/etc/udhcpc" "$stage/run/udhcpc"
install -m 0755 "$guest_src/udhcpc.script" "$stage/usr/share/udhcpc/default.script"
ln -s /usr/share/udhcpc/default.script "$stage/etc/udhcpc/default.script"
# The kernel opens /dev/console for init before /init runs (init also re-opens
# it via devtmpfs, so a missing node only matters for messages before that).
if [[ $(id -u) == 0 ]]; then
	mknod -m 0600 "$stage/dev/console" c 5 1
fi

# --- kernel modules -----------------------------------------------------------
norm() { local n=${1##*/}; n=${n%%.ko*}; printf '%s' "${n//-/_}"; }

declare -A modfile=() builtin=() depsof=() state=()
while IFS= read -r -d '' f; do
	modfile[$(norm "$f")]=$f
done < <(find "$moddir" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)
if [[ -f $moddir/modules.builtin ]]; then
	while IFS= read -r line; do
		[[ -n $line ]] && builtin[$(norm "$line")]=1
	done <"$moddir/modules.builtin"
fi
# Debian does not ship modules.dep (depmod makes it at install time); use it
# when present, else read "depends=" from each module's .modinfo section.
have_dep=0
if [[ -s $moddir/modules.dep ]]; then
	have_dep=1
	while IFS= read -r line; do
		key=$(norm "${line%%:*}")
		deps=
		for d in ${line#*:}; do deps+=" $(norm "$d")"; done
		depsof[$key]=$deps
	done <"$moddir/modules.dep"
fi

compressed=()
# extract_module NAME: put NAME.ko, uncompressed, into the initramfs.
extract_module() {
	local src=${modfile[$1]} dst=$stage/lib/modules/$1.ko
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst"; compressed+=("$1(xz)") ;;
	*.ko.zst) zstd -qdc "$src" >"$dst"; compressed+=("$1(zst)") ;;
	*.ko.gz) gzip -dc "$src" >"$dst"; compressed+=("$1(gz)") ;;
	esac
	[[ $(head -c4 "$dst" | od -An -c | tr -d ' \n') == '177ELF' ]] || die "$src: not an ELF module after extraction"
	chmod 0644 "$dst"
}

order=()
skipped_builtin=()
visit() {
	local m=$1 d deps
	case ${state[$m]:-} in
	visited) return 0 ;;
	visiting) die "module dependency cycle at $m" ;;
	esac
	state[$m]=visiting
	if [[ -z ${modfile[$m]:-} ]]; then
		[[ -n ${builtin[$m]:-} ]] || die "module $m is neither a module nor built in"
		skipped_builtin+=("$m")
		state[$m]=visited
		return 0
	fi
	extract_module "$m"
	if ((have_dep)); then
		deps=${depsof[$m]:-}
	else
		deps=$(tr '\0' '\n' <"$stage/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n1)
		deps=${deps//,/ }
	fi
	for d in $deps; do
		visit "$(norm "$d")"
	done
	order+=("$m")
	state[$m]=visited
}

while IFS= read -r want; do
	want=${want%%#*}
	want=${want//[[:space:]]/}
	[[ -n $want ]] || continue
	optional=0
	if [[ $want == *'?' ]]; then
		optional=1
		want=${want%'?'}
	fi
	want=$(norm "$want")
	if ((optional)) && [[ -z ${modfile[$want]:-} && -z ${builtin[$want]:-} ]]; then
		log "warning: optional module $want not in this kernel, skipped"
		continue
	fi
	visit "$want"
done <"$guest_src/modules"
printf '%s\n' "${order[@]}" >"$stage/lib/modules/load-order"
log "modules (load order): ${order[*]}"
((${#skipped_builtin[@]} == 0)) || log "built in (skipped): ${skipped_builtin[*]}"
((${#compressed[@]} == 0)) || log "decompressed: ${compressed[*]}"

# --- initramfs + atomic install -----------------------------------------------
log "packing initramfs"
# Fixed order, owners and mtimes: the same inputs give the same image.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
	| gzip -9 -n >"$work/initramfs.img"

# Publish atomically: each build lives in its own directory under
# .<name>.builds/, and $out is a symlink that is replaced with rename(2), so a
# reader sees either the old or the new complete build, never a mix.
builds=$parent/.${out##*/}.builds
mkdir -p "$builds"
chmod 0755 "$builds"
newdir=$(mktemp -d "$builds/.new.XXXXXX")
install -m 0644 "${vmlinuz[0]}" "$newdir/vmlinuz"
install -m 0644 "$work/initramfs.img" "$newdir/initramfs.img"
{
	printf '%s\n' "$stamp_hash"
	printf '%s\n' "$stamp_inputs"
	printf 'kernel-release %s\n' "$kver"
	printf 'modules %s\n' "${order[*]}"
} >"$newdir/stamp"
chmod 0644 "$newdir/stamp"
chmod 0755 "$newdir"

build_id=$(date -u +%Y%m%dT%H%M%SZ)-${stamp_hash:0:12}-$$
mv -T "$newdir" "$builds/$build_id"
newdir=
previous=
if [[ -L $out ]]; then
	previous=$(readlink "$out")
	previous=${previous##*/}
elif [[ -e $out ]]; then # a plain directory (older layout): move it aside once
	mv -T "$out" "$builds/.old.$$"
	rm -rf "$builds/.old.$$"
fi
ln -sfn "${builds##*/}/$build_id" "$out.tmp.$$"
mv -T "$out.tmp.$$" "$out"
# Keep the new build, the one before it, and every build less than a day old:
# a VM may be starting from one (or a test may hold its resolved path), and
# builds are rare, so this costs little space. Older ones go, as do leftover
# .new.* directories of interrupted runs that are over a day old.
while IFS= read -r -d '' d; do
	case ${d##*/} in "$build_id" | "$previous") continue ;; esac
	rm -rf "$d"
done < <(find "$builds" -mindepth 1 -maxdepth 1 -type d -mmin +1440 -print0)

log "built $out: $(du -h "$out/vmlinuz" | cut -f1) vmlinuz, $(du -h "$out/initramfs.img" | cut -f1) initramfs"
printf '%s\n' "$out"
