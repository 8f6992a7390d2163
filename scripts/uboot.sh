#!/usr/bin/env bash
# Build a bundle that boots Debian's U-Boot for QEMU `virt` under the
# hypervisor, as firmware (docs/HYPERVISOR.md, "Bundles").
#
# On first use, fetches through APT (apt-get download, no installation)
# Debian's u-boot-qemu package (architecture "all": it holds the builds for
# every QEMU machine) and keeps from it, in a cache outside the repository:
#
#   qemu_arm64/u-boot.bin   U-Boot for qemu-system-aarch64 -M virt
#   qemu_arm/u-boot.bin     U-Boot for qemu-system-arm -M virt
#   versions                what was fetched
#
# Then writes the hypervisor's bundle for one architecture: a cpio newc
# archive with, for each VM N, vmN/firmware (u-boot.bin, which the
# hypervisor places in the VM's flash at IPA 0, where U-Boot is linked and
# where QEMU virt's -bios would be) and vmN/config. With --linux the bundle
# also holds the Linux kernel scripts/linux.sh fetched (vmN/kernel, loaded
# in guest RAM at 0x4020_0000 for U-Boot's booti or bootz to start) and its
# initramfs (vmN/initrd). The bundle is the hypervisor's -initrd.
#
# Needs dpkg and APT (Debian, Ubuntu). Quick and without network access once
# the cache is filled; delete the cache directory to fetch again.
#
# Exit status: 0 on success, 1 when fetching or building fails, 2 on invalid
# usage.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
Usage: scripts/uboot.sh [OPTIONS]

Fetch Debian's u-boot-qemu (once; cached) and write a bundle that boots
U-Boot under the hypervisor, to its prompt (=>).

Options:
  --arch ARCH      aarch64 (default; qemu_arm64) or arm (qemu_arm)
  --vcpus N        vCPUs of each VM (default: 1)
  --mem SIZE       RAM of each VM, e.g. 256M or 1G (default: 256M; 512M
                   with --linux)
  --vms N          number of identical U-Boot VMs (default: 1)
  --linux          also put Linux (kernel and initramfs of scripts/linux.sh,
                   which this runs) in each VM's RAM, for U-Boot to boot
  --out FILE       the bundle to write (default: out/uboot/ARCH/bundle.cpio)
  --fetch-only     fetch into the cache and stop
  -h, --help       show this help and exit

Options taking a value also accept the --option=VALUE form.

The cache is ${XDG_CACHE_HOME:-$HOME/.cache}/s2hyp/uboot/ (or
$S2HYP_UBOOT_CACHE/): qemu_arm64/u-boot.bin, qemu_arm/u-boot.bin and
versions. Set MKCPIO to a built mkcpio binary to skip `cargo run -p
harness --bin mkcpio`.
Exit status: 0 on success, 1 when fetching or building fails, 2 on
invalid usage.
EOF
}

# Print MESSAGE and the usage to stderr, exit 2.
usage_error() {
    printf 'uboot.sh: %s\n\n' "$1" >&2
    usage >&2
    exit 2
}
# shellcheck source=scripts/lib/options.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/options.sh"

log() { printf 'uboot.sh: %s\n' "$*"; }
err() { printf 'uboot.sh: error: %s\n' "$*" >&2; }

arch=aarch64
vcpus=1
mem=""
vms=1
linux=0
out=""
fetch_only=0

while (($#)); do
    opt=$1
    # Split "--opt=value" into "--opt" "value".
    if [[ $opt == --*=* ]]; then
        set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
        opt=$1
    fi
    case $opt in
    -h | --help)
        usage
        exit 0
        ;;
    --fetch-only)
        fetch_only=1
        shift
        ;;
    --linux)
        linux=1
        shift
        ;;
    --arch | --vcpus | --mem | --vms | --out)
        (($# >= 2)) || usage_error "option $opt needs a value"
        value=$2
        shift 2
        case $opt in
        --arch)
            check_arch "$value"
            arch=$value
            ;;
        --vcpus)
            check_count --vcpus "$value"
            vcpus=$value
            ;;
        --mem)
            check_size --mem "$value"
            mem=$value
            ;;
        --vms)
            check_count --vms "$value"
            vms=$value
            ;;
        --out)
            [[ -n $value ]] || usage_error "--out needs a file name"
            out=$value
            [[ $out == /* ]] || out=$caller_dir/$out
            ;;
        esac
        ;;
    *)
        usage_error "unknown option '$opt'"
        ;;
    esac
done

if [[ -z $mem ]]; then
    if ((linux)); then mem=512M; else mem=256M; fi
fi

case $arch in
aarch64) board=qemu_arm64 ;;
arm) board=qemu_arm ;;
esac

home=${HOME:-$(cd ~ && pwd)}
cache=${S2HYP_UBOOT_CACHE:-${XDG_CACHE_HOME:-$home/.cache}/s2hyp/uboot}
outdir=out/uboot/$arch
[[ -n $out ]] || out=$PWD/$outdir/bundle.cpio
mkdir -p "$cache" "$outdir" "$(dirname "$out")"

# Temporary files of this run, removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/s2hyp-uboot.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One run at a time (the harness's tests may start several).
if command -v flock >/dev/null; then
    exec {lock_fd}>"$cache/.lock"
    flock "$lock_fd"
fi

# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------

# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh

# Whether APT has a candidate for u-boot-qemu.
apt_knows_uboot() {
    local cand
    cand=$(apt-cache policy u-boot-qemu 2>/dev/null |
        sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p')
    [[ -n $cand && $cand != "(none)" ]]
}

# Fetch u-boot-qemu into $cache unless it is there.
fetch() {
    if [[ -s $cache/qemu_arm64/u-boot.bin && -s $cache/qemu_arm/u-boot.bin &&
        -s $cache/versions ]]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        err "fetching needs Debian's APT and dpkg. Without them, put these into $cache/:"
        err "  qemu_arm64/u-boot.bin and qemu_arm/u-boot.bin (U-Boot's qemu_arm64 and"
        err "  qemu_arm builds, linked at 0), versions (any text)"
        return 1
    fi
    if ! apt_knows_uboot; then
        if ((EUID == 0)); then
            log "APT knows no u-boot-qemu: updating its lists"
            apt_get update
        fi
        apt_knows_uboot || {
            err "APT offers no u-boot-qemu package"
            ((EUID == 0)) || err "(as root, run: apt-get update; then try again)"
            return 1
        }
    fi
    local x=$work/fetch deb b
    mkdir -p "$x/root"
    log "fetching u-boot-qemu into $cache"
    (cd "$x" && apt_get download u-boot-qemu)
    deb=$(find "$x" -maxdepth 1 -name 'u-boot-qemu_*.deb' -print -quit)
    [[ -n $deb ]] || {
        err "apt-get download did not bring u-boot-qemu"
        return 1
    }
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -C "$x/root" ./usr/lib/u-boot/qemu_arm64/u-boot.bin \
            ./usr/lib/u-boot/qemu_arm/u-boot.bin
    for b in qemu_arm64 qemu_arm; do
        [[ -s $x/root/usr/lib/u-boot/$b/u-boot.bin ]] || {
            err "u-boot-qemu holds no /usr/lib/u-boot/$b/u-boot.bin"
            return 1
        }
    done

    # Into place; `versions` last, as it marks a complete cache.
    rm -f "$cache/versions"
    for b in qemu_arm64 qemu_arm; do
        mkdir -p "$cache/$b"
        install -m 0644 "$x/root/usr/lib/u-boot/$b/u-boot.bin" "$cache/$b/u-boot.bin"
    done
    printf 'u-boot u-boot-qemu %s\n' "$(dpkg-deb -f "$deb" Version)" >"$cache/versions.tmp"
    mv "$cache/versions.tmp" "$cache/versions"
    rm -rf "$x"
}

# mkcpio ARGS...: the harness's cpio tool.
mkcpio() {
    if [[ -n ${MKCPIO:-} ]]; then
        "$MKCPIO" "$@"
    else
        cargo run -q --release -p harness --bin mkcpio -- "$@"
    fi
}

fetch
log "cache: $cache"
sed 's/^/    /' "$cache/versions"
if ((fetch_only)); then
    exit 0
fi

firmware=$cache/$board/u-boot.bin
# Not the firmware of another machine: U-Boot's qemu_arm64 build starts with
# a branch (0x14000000 | imm26), its qemu_arm build with its vector table
# (branch instructions, 0xea000000 | imm24).
# shellcheck source=scripts/lib/image-headers.sh
. scripts/lib/image-headers.sh
first=$(le 4 "$firmware" 0)
case $arch in
aarch64) (((first & 0xfc000000) == 0x14000000)) ;;
arm) (((first & 0xff000000) == 0xea000000)) ;;
esac || {
    err "$firmware does not start with a $arch branch instruction ($(printf '%#x' "$first"))"
    exit 1
}

linux_items=""
if ((linux)); then
    # scripts/linux.sh fetches (or finds in its cache) the kernel and builds
    # the initramfs; its own bundle is not used.
    linux_cache=${S2HYP_LINUX_CACHE:-${XDG_CACHE_HOME:-$home/.cache}/s2hyp/linux}/$arch
    scripts/linux.sh --arch "$arch" --out "$work/linux.cpio" >"$work/linux.log" 2>&1 || {
        cat "$work/linux.log" >&2
        err "scripts/linux.sh failed"
        exit 1
    }
    linux_items=",kernel=$linux_cache/vmlinuz,initrd=$PWD/out/linux/$arch/initramfs.cpio.gz"
fi

vm_args=()
for ((n = 1; n <= vms; n++)); do
    cmdline=""
    ((linux)) && cmdline=",cmdline=console=ttyAMA0 earlycon s2hyp.vm=$n"
    vm_args+=(--vm "firmware=$firmware$linux_items$cmdline,config=vcpus=$vcpus mem=$mem")
done
mkcpio bundle -o "$out" "${vm_args[@]}"

log "firmware:  $firmware"
log "bundle:    $out ($(wc -c <"$out") bytes), $vms VM(s):"
mkcpio check "$out" | sed 's/^/    /'
if [[ $arch == arm ]]; then
    log "boot it:   qemu-system-arm -M virt,virtualization=on -cpu cortex-a15 -m 1G -nographic \\"
    log "             -kernel out/arm/hyp.bin -initrd $out"
else
    log "boot it:   qemu-system-aarch64 -M virt,virtualization=on -cpu max -m 1G -nographic \\"
    log "             -kernel out/hyp.bin -initrd $out"
fi
