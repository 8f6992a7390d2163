#!/usr/bin/env bash
# Build a bundle that boots Debian's Linux under the hypervisor.
#
# On first use for an architecture, fetches through APT (apt-get download,
# no installation) Debian's newest kernel for it and a static busybox,
# and keeps what it needs from them in a cache outside the repository:
#
#   aarch64: linux-image-<version>-arm64-unsigned (a raw arm64 Image),
#            busybox-static:arm64
#   arm:     linux-image-<version>-armmp-lpae (a zImage for ARMv7 with LPAE),
#            busybox-static:armhf
#
# Then builds the guests' initramfs (busybox, its applets installed at boot
# by /init, an interactive shell on the console; with --memstress also the
# memory workload tests/memstress as /bin/memstress, built here for the
# guests' architecture) and writes the hypervisor's bundle (docs in
# tests/src/cpio.rs): a cpio newc archive holding, for each VM N,
# vmN/kernel, vmN/initrd, vmN/cmdline and vmN/config. With --test-vm, VM 1
# runs a guest test image of scripts/build.sh instead and the Linux VMs
# follow it. The bundle is the hypervisor's -initrd (scripts/run.sh --linux
# does all of it).
#
# Needs dpkg and APT (Debian, Ubuntu). The foreign architecture (arm64 or
# armhf) must be known to dpkg: as root the script adds it itself
# (dpkg --add-architecture, apt-get update); otherwise it prints what to run.
# Quick and without network access once the cache is filled; delete the
# cache directory to fetch the newest kernel again.
#
# Exit status: 0 on success, 1 when fetching or building fails, 2 on invalid
# usage.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
Usage: scripts/linux.sh [OPTIONS]

Fetch Debian's kernel and busybox (once; cached) and write a bundle that
boots them under the hypervisor, to an interactive busybox shell.

Options:
  --arch ARCH      aarch64 (default; Debian arm64) or arm (armhf, armmp-lpae)
  --vcpus N        vCPUs of each VM (default: 1)
  --mem SIZE       RAM of each VM, e.g. 512M or 1G (default: 512M)
  --vms N          number of identical Linux VMs (default: 1)
  --cmdline TEXT   more kernel command line, after the default
                   "console=ttyAMA0 earlycon s2hyp.vm=N"
  --memstress      build tests/memstress for ARCH (a static binary: Rust's
                   aarch64-unknown-linux-musl, or armv7-unknown-linux-gnueabihf
                   with a static glibc and Debian's arm-linux-gnueabihf-gcc,
                   both set up by scripts/setup.sh) and install it as
                   /bin/memstress in the initramfs
  --test-vm IMAGE  make VM 1 run a guest test image (a name such as hostile,
                   for out/guest-hostile.bin or out/arm/guest-hostile.bin of
                   scripts/build.sh, or a file) with the command line "vm=1";
                   the Linux VMs become VMs 2 and up
  --test-vm-args TEXT
                   more of that VM's command line, after "vm=1" (e.g.
                   "start=input": hostile waits for a byte on its console)
  --test-vm-config TEXT
                   that VM's config (default: "vcpus=1 mem=64M")
  --out FILE       the bundle to write (default: out/linux/ARCH/bundle.cpio)
  --fetch-only     fetch into the cache and stop
  -h, --help       show this help and exit

Options taking a value also accept the --option=VALUE form.

The cache is ${XDG_CACHE_HOME:-$HOME/.cache}/s2hyp/linux/ARCH/ (or
$S2HYP_LINUX_CACHE/ARCH/): vmlinuz, config, busybox, versions (what
was fetched) and, for aarch64, bcm2711-rpi-4-b.dtb (the Pi 4's device
tree). The initramfs is out/linux/ARCH/initramfs.cpio.gz
(initramfs-memstress.cpio.gz with --memstress).
Set MKCPIO to a built mkcpio binary to skip `cargo run -p harness --bin
mkcpio`.
Exit status: 0 on success, 1 when fetching or building fails, 2 on
invalid usage.
EOF
}

# Print MESSAGE and the usage to stderr, exit 2.
usage_error() {
    printf 'linux.sh: %s\n\n' "$1" >&2
    usage >&2
    exit 2
}
# shellcheck source=scripts/lib/options.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/options.sh"

log() { printf 'linux.sh: %s\n' "$*"; }
err() { printf 'linux.sh: error: %s\n' "$*" >&2; }

arch=aarch64
vcpus=1
mem=512M
vms=1
cmdline=""
out=""
fetch_only=0
memstress=0
test_vm=""
test_vm_config="vcpus=1 mem=64M"
test_vm_args=""

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
    --memstress)
        memstress=1
        shift
        ;;
    --arch | --vcpus | --mem | --vms | --cmdline | --out | --test-vm | --test-vm-config | --test-vm-args)
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
        --cmdline)
            [[ $value != *$'\n'* ]] || usage_error "--cmdline must be one line"
            cmdline=$value
            ;;
        --out)
            [[ -n $value ]] || usage_error "--out needs a file name"
            out=$value
            [[ $out == /* ]] || out=$caller_dir/$out
            ;;
        --test-vm)
            [[ -n $value && $value != *,* ]] ||
                usage_error "invalid --test-vm '$value' (expected an image name or file, without commas)"
            test_vm=$value
            if [[ $value == */* ]]; then
                [[ $test_vm == /* ]] || test_vm=$caller_dir/$test_vm
            fi
            ;;
        --test-vm-args)
            [[ $value != *$'\n'* && $value != *,* ]] ||
                usage_error "--test-vm-args must be one line without commas"
            test_vm_args=$value
            ;;
        --test-vm-config)
            [[ $value =~ ^[a-z]+=[0-9A-Za-z]+( [a-z]+=[0-9A-Za-z]+)*$ ]] ||
                usage_error "invalid --test-vm-config '$value' (expected e.g. \"vcpus=2 mem=64M\")"
            test_vm_config=$value
            ;;
        esac
        ;;
    *)
        usage_error "unknown option '$opt'"
        ;;
    esac
done

# The Raspberry Pi 4's device tree, from the arm64 kernel package: QEMU's
# raspi4b passes it to the Pi 4 image (with the bundle as its initrd).
PI4_DTB=bcm2711-rpi-4-b.dtb

case $arch in
aarch64)
    debarch=arm64
    # linux-image-6.12.95+deb12-arm64-unsigned; not -cloud- or -rt-.
    kernel_re='^linux-image-[0-9][^ ]*-arm64-unsigned$'
    elf_machine=0xb7 # EM_AARCH64
    # The Rust target of tests/memstress (linkers: .cargo/config.toml).
    user_target=aarch64-unknown-linux-musl
    images=out
    ;;
arm)
    debarch=armhf
    kernel_re='^linux-image-[0-9][^ ]*-armmp-lpae$'
    elf_machine=0x28 # EM_ARM
    user_target=armv7-unknown-linux-gnueabihf
    images=out/arm
    ;;
esac

home=${HOME:-$(cd ~ && pwd)}
cache_root=${S2HYP_LINUX_CACHE:-${XDG_CACHE_HOME:-$home/.cache}/s2hyp/linux}
cache=$cache_root/$arch
outdir=out/linux/$arch
[[ -n $out ]] || out=$PWD/$outdir/bundle.cpio
mkdir -p "$cache" "$outdir" "$(dirname "$out")"

# Temporary files of this run, removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/s2hyp-linux.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One run at a time per architecture (the harness's tests may start several).
if command -v flock >/dev/null; then
    exec {lock_fd}>"$cache/.lock"
    flock "$lock_fd"
fi

# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------

# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh

# le BYTES FILE OFFSET (a little-endian integer in a file).
# shellcheck source=scripts/lib/image-headers.sh
. scripts/lib/image-headers.sh

# Succeed when dpkg knows architecture $1 (native or foreign).
dpkg_has_arch() {
    [[ $(dpkg --print-architecture) == "$1" ]] ||
        grep -qx "$1" <<<"$(dpkg --print-foreign-architectures)"
}

# Make dpkg and APT know $debarch, as root; otherwise say what to run.
ensure_arch() {
    dpkg_has_arch "$debarch" && return 0
    if ((EUID != 0)); then
        err "dpkg does not know the architecture $debarch; as root, run:"
        err "  dpkg --add-architecture $debarch && apt-get update"
        err "then run scripts/linux.sh again (it needs no root then)."
        return 1
    fi
    log "adding the architecture $debarch to dpkg and updating APT's lists"
    dpkg --add-architecture "$debarch"
    apt_get update
}

# The kernel packages APT knows for $debarch, newest last.
kernel_packages() {
    apt-cache search --names-only "$kernel_re" | awk '{ print $1 }' |
        grep -Ev -- '-(cloud|rt)-' | sort -V || true
}

# Print the newest kernel package that has a candidate for $debarch.
pick_kernel() {
    local pkgs pkg cand
    pkgs=$(kernel_packages)
    if [[ -z $pkgs && $EUID == 0 ]]; then
        log "APT knows no $debarch kernel package: updating its lists"
        apt_get update
        pkgs=$(kernel_packages)
    fi
    while read -r pkg; do
        [[ -n $pkg ]] || continue
        cand=$(apt-cache policy "$pkg:$debarch" 2>/dev/null |
            sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p')
        if [[ -n $cand && $cand != "(none)" ]]; then
            printf '%s\n' "$pkg"
            return 0
        fi
    done < <(tac <<<"$pkgs")
    err "APT offers no package matching $kernel_re for $debarch"
    ((EUID == 0)) || err "(as root, run: apt-get update; then try again)"
    return 1
}

# Fetch the kernel and busybox into $cache unless they are there.
fetch() {
    if [[ -s $cache/vmlinuz && -s $cache/busybox && -s $cache/versions ]] &&
        [[ $arch != aarch64 || -s $cache/$PI4_DTB ]]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        err "fetching needs Debian's APT and dpkg. Without them, put these into $cache/:"
        err "  vmlinuz  (the kernel: an arm64 Image, or an ARM zImage with LPAE),"
        err "  busybox  (a static $debarch busybox), versions (any text)"
        return 1
    fi
    ensure_arch
    local kpkg debs=() d kdeb="" bdeb="" x=$work/fetch
    kpkg=$(pick_kernel)
    log "fetching $kpkg:$debarch and busybox-static:$debarch into $cache"
    mkdir -p "$x/root"
    (cd "$x" && apt_get download "$kpkg:$debarch" "busybox-static:$debarch")
    for d in "$x"/*.deb; do debs+=("$d"); done
    for d in "${debs[@]}"; do
        case $(dpkg-deb -f "$d" Package) in
        busybox-static) bdeb=$d ;;
        "$kpkg") kdeb=$d ;;
        esac
    done
    [[ -n $kdeb && -n $bdeb ]] || {
        err "apt-get download did not bring both packages (got: ${debs[*]##*/})"
        return 1
    }

    local members=('./boot/vmlinuz-*' './boot/config-*')
    [[ $arch == aarch64 ]] && members+=("./usr/lib/linux-image-*/broadcom/$PI4_DTB")
    dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$x/root" --wildcards "${members[@]}"
    dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$x/root" ./bin/busybox
    local images=("$x"/root/boot/vmlinuz-*) release image=$x/Image
    ((${#images[@]} == 1)) || {
        err "$kpkg holds ${#images[@]} /boot/vmlinuz-* files"
        return 1
    }
    release=${images[0]##*/vmlinuz-}

    # Debian's arm64 vmlinuz is a raw Image (with an EFI stub); accept a
    # gzip'd one too. The ARM one is a zImage.
    if (($(le 2 "${images[0]}" 0) == 0x8b1f)); then
        gzip -dc "${images[0]}" >"$image"
    else
        cp "${images[0]}" "$image"
    fi
    if [[ $arch == aarch64 ]] && (($(le 4 "$image" 56) != 0x644d5241)); then
        err "$kpkg: /boot/vmlinuz-$release is not an arm64 Image (no ARM\\x64 magic at 0x38)"
        return 1
    fi
    if [[ $arch == arm ]] && (($(le 4 "$image" 0x24) != 0x016f2818)); then
        err "$kpkg: /boot/vmlinuz-$release is not a zImage (no 0x016f2818 at 0x24)"
        return 1
    fi
    local bb=$x/root/bin/busybox
    if (($(le 4 "$bb" 0) != 0x464c457f || $(le 2 "$bb" 18) != elf_machine)); then
        err "busybox-static:$debarch: /bin/busybox is not a $debarch ELF executable"
        return 1
    fi

    # Into place; `versions` last, as it marks a complete cache.
    rm -f "$cache/versions"
    install -m 0644 "$image" "$cache/vmlinuz"
    install -m 0644 "$x/root/boot/config-$release" "$cache/config"
    if [[ $arch == aarch64 ]]; then
        install -m 0644 "$x"/root/usr/lib/linux-image-*/broadcom/"$PI4_DTB" "$cache/$PI4_DTB"
    fi
    install -m 0755 "$bb" "$cache/busybox"
    {
        printf 'kernel %s %s (release %s)\n' "$kpkg" "$(dpkg-deb -f "$kdeb" Version)" "$release"
        printf 'busybox busybox-static %s\n' "$(dpkg-deb -f "$bdeb" Version)"
    } >"$cache/versions.tmp"
    mv "$cache/versions.tmp" "$cache/versions"
    rm -rf "$x"
}

# ---------------------------------------------------------------------------
# The initramfs and the bundle
# ---------------------------------------------------------------------------

# The guests' /init (busybox sh). Prints the line the harness waits for
# ("s2hyp-linux: /init reached, N CPUs ...") and runs a login-less shell.
write_init() {
    cat <<'EOF'
#!/bin/sh
# /init of the s2hyp Linux guests (written by scripts/linux.sh): mounts
# proc, sysfs and devtmpfs, installs busybox's applets, says it got here,
# then runs an interactive shell on the console. `poweroff -f` powers the
# VM off (PSCI SYSTEM_OFF); so does leaving the shell.
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1

# This VM's number, from s2hyp.vm=N on the command line.
vm=1
read -r cmdline </proc/cmdline
set -f
for word in $cmdline; do
    case $word in
    s2hyp.vm=*) vm=${word#s2hyp.vm=} ;;
    esac
done
set +f
hostname "s2hyp-vm$vm"
cpus=$(grep -c '^processor' /proc/cpuinfo)
echo "s2hyp-linux: /init reached, $cpus CPUs (vm$vm, Linux $(uname -r) $(uname -m))"
echo "s2hyp-linux: busybox shell; 'poweroff -f' powers this VM off"

export HOME=/root PATH=/sbin:/usr/sbin:/bin:/usr/bin PS1="s2hyp-vm$vm:\\w# "
cd /root || true
# A session of its own with the console's real tty as controlling
# terminal, for job control (Ctrl-C, Ctrl-Z).
if command -v cttyhack >/dev/null; then
    setsid cttyhack sh
else
    sh
fi
echo "s2hyp-linux: the shell exited: powering off"
poweroff -f
echo "s2hyp-linux: poweroff failed"
exec sh
EOF
}

# mkcpio ARGS...: the harness's cpio tool.
mkcpio() {
    if [[ -n ${MKCPIO:-} ]]; then
        "$MKCPIO" "$@"
    else
        cargo run -q --release -p harness --bin mkcpio -- "$@"
    fi
}

# Build the initramfs into $initrd (the same bytes for the same busybox).
build_initramfs() {
    local root=$work/root d
    mkdir -p "$root"
    for d in bin dev etc proc root sbin sys tmp usr usr/bin usr/sbin; do
        mkdir -p "$root/$d"
        chmod 0755 "$root/$d"
    done
    chmod 0700 "$root/root"
    chmod 1777 "$root/tmp"
    install -m 0755 "$cache/busybox" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    if ((memstress)); then
        install -m 0755 "$memstress_bin" "$root/bin/memstress"
    fi
    write_init >"$root/init"
    chmod 0755 "$root/init"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
    mkcpio tree -o "$work/initramfs.cpio" "$root"
    gzip -9n -c "$work/initramfs.cpio" >"$initrd.tmp$$"
    mv "$initrd.tmp$$" "$initrd"
}

# Build tests/memstress for $user_target into $memstress_bin: a static
# executable of $elf_machine, stripped by the linker (the guest's RAM holds
# the initramfs; llvm-objcopy cannot strip a static glibc executable).
build_memstress() {
    local built=target/$user_target/release/memstress
    log "building tests/memstress for $user_target"
    if ! CARGO_PROFILE_RELEASE_STRIP=symbols cargo build -q --release -p memstress \
        --target "$user_target"; then
        err "cargo build -p memstress --target $user_target failed: run scripts/setup.sh"
        err "(it installs the Rust target and, for arm, Debian's gcc-arm-linux-gnueabihf)"
        return 1
    fi
    install -m 0755 "$built" "$memstress_bin"
    if (($(le 4 "$memstress_bin" 0) != 0x464c457f || $(le 2 "$memstress_bin" 18) != elf_machine)); then
        err "$built is not an ELF executable for $debarch"
        return 1
    fi
    # A static executable has no program interpreter (PT_INTERP, type 3).
    local phoff phentsize phnum i
    phoff=$(le "$((elf_machine == 0xb7 ? 8 : 4))" "$memstress_bin" "$((elf_machine == 0xb7 ? 32 : 28))")
    phentsize=$(le 2 "$memstress_bin" "$((elf_machine == 0xb7 ? 54 : 42))")
    phnum=$(le 2 "$memstress_bin" "$((elf_machine == 0xb7 ? 56 : 44))")
    for ((i = 0; i < phnum; i++)); do
        if (($(le 4 "$memstress_bin" "$((phoff + i * phentsize))") == 3)); then
            err "$built is dynamically linked (it has a PT_INTERP): the initramfs has no libc"
            return 1
        fi
    done
}

fetch
log "cache: $cache"
sed 's/^/    /' "$cache/versions"
if ((fetch_only)); then
    exit 0
fi

if ((memstress)); then
    memstress_bin=$work/memstress
    build_memstress
    initrd=$PWD/$outdir/initramfs-memstress.cpio.gz
else
    initrd=$PWD/$outdir/initramfs.cpio.gz
fi
build_initramfs

vm_args=()
first=1
if [[ -n $test_vm ]]; then
    image=$test_vm
    [[ $image == */* ]] || image=$PWD/$images/guest-$image.bin
    [[ -s $image ]] || {
        err "no test image $image (scripts/build.sh builds out/guest-NAME.bin and out/arm/guest-NAME.bin)"
        exit 1
    }
    vm_args+=(--vm "kernel=$image,cmdline=vm=1${test_vm_args:+ $test_vm_args},config=$test_vm_config")
    first=2
fi
for ((n = first; n < first + vms; n++)); do
    line="console=ttyAMA0 earlycon s2hyp.vm=$n${cmdline:+ $cmdline}"
    vm_args+=(--vm "kernel=$cache/vmlinuz,initrd=$initrd,cmdline=$line,config=vcpus=$vcpus mem=$mem")
done
mkcpio bundle -o "$out" "${vm_args[@]}"

log "kernel:    $cache/vmlinuz"
log "busybox:   $cache/busybox"
log "initramfs: $initrd ($(wc -c <"$initrd") bytes)"
log "bundle:    $out ($(wc -c <"$out") bytes), $((${#vm_args[@]} / 2)) VM(s):"
mkcpio check "$out" | sed 's/^/    /'
if [[ $arch == arm ]]; then
    log "boot it:   scripts/run.sh --arch arm --linux (or pass the bundle as the hypervisor's -initrd)"
else
    log "boot it:   scripts/run.sh --linux (or pass the bundle as the hypervisor's -initrd)"
fi
