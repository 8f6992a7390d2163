#!/usr/bin/env bash
# Build the bare-metal images into out/ (see docs/HYPERVISOR.md, "Images and
# build"), for AArch64 (aarch64-unknown-none) and ARM32 (armv7a-none-eabi):
#
#   out/guest-<name>.bin      every bin of the `guest` package (tests/guest),
#                             AArch64, as a flat image linked at IPA 0x4020_0000
#   out/hyp.elf               the EL2 hypervisor (ELF, for gdb), with the demo
#                             guest (out/guest-demo.bin) built in
#   out/hyp.bin               the same as a flat arm64 Linux image (QEMU -kernel)
#   out/arm/guest-<name>.bin  the guest images for ARM32 (SVC mode), same IPA
#   out/arm/hyp.elf           the ARMv7 Hyp-mode hypervisor, with
#                             out/arm/guest-demo.bin built in
#   out/arm/hyp.bin           the same as a flat zImage-style ARM image, linked
#                             and loaded at 0x4001_0000
#   out/rpi4/kernel8.img      the hypervisor for the Raspberry Pi 4 (feature
#   out/rpi3/kernel8.img      rpi4, rpi3: arm64 image, text_offset 0x80000)
#   out/rpi2/kernel7.img      and Pi 2 (feature rpi2: zImage-style, at 0x8000),
#                             each with its architecture's demo guest built
#                             in, and their ELFs (hyp.elf) beside them
#
# Flat images are made with llvm-objcopy from the `llvm-tools` rustup
# component (rust-toolchain.toml lists it). Idempotent and quick when
# everything is up to date: cargo does nothing, and an output file is only
# rewritten when its content changes (so the hypervisor, which embeds
# out/guest-demo.bin, is not rebuilt needlessly).
#
# Usage: scripts/build.sh [--release | --debug] [--arch aarch64|arm|all]
#                        [--board rpi4|rpi3|rpi2]
#        (default: --release, both architectures and the three boards)
# Exit status: 0 on success, 1 when a build or a check fails, 2 on bad usage.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
readonly ROOT
readonly OUT_ROOT="$ROOT/out"

log() { printf 'build: %s\n' "$*"; }
err() { printf 'build: error: %s\n' "$*" >&2; }

usage() {
    cat <<'EOF'
Usage: scripts/build.sh [--release | --debug] [--arch aarch64|arm|all]
                        [--board rpi4|rpi3|rpi2]

Build the guest test images and the hypervisor and write, for AArch64
(aarch64-unknown-none), out/guest-<name>.bin, out/hyp.elf and out/hyp.bin,
for ARM32 (armv7a-none-eabi) the same files under out/arm/, and the
Raspberry Pi images out/rpi4/kernel8.img, out/rpi3/kernel8.img and
out/rpi2/kernel7.img, and out/rpi4-irq/kernel8.img: the Pi 4 image with
the `irq` guest built in instead of the demo (the GIC-400 checks of the
QEMU harness).

Options:
  --release      optimised build (default)
  --debug        unoptimised (dev profile) build
  --arch ARCH    only this architecture's guests and QEMU virt hypervisor:
                 aarch64, arm, or all (default: all, with the boards)
  --board BOARD  only this Raspberry Pi's image (and the guests it embeds):
                 rpi4, rpi3, rpi2 or rpi4-irq
  -h, --help     show this help and exit
EOF
}

profile=release
arches=(aarch64 arm)
boards=(rpi4 rpi3 rpi2 rpi4-irq)
while (($#)); do
    case $1 in
    --release) profile=release ;;
    --debug) profile=debug ;;
    --arch | --arch=*)
        if [[ $1 == --arch=* ]]; then
            value=${1#--arch=}
        else
            (($# >= 2)) || {
                printf 'build.sh: --arch needs a value\n\n' >&2
                usage >&2
                exit 2
            }
            value=$2
            shift
        fi
        boards=()
        case $value in
        aarch64 | arm) arches=("$value") ;;
        all) arches=(aarch64 arm) ;;
        *)
            printf 'build.sh: invalid --arch %s (expected aarch64, arm or all)\n\n' "$value" >&2
            usage >&2
            exit 2
            ;;
        esac
        ;;
    --board | --board=*)
        if [[ $1 == --board=* ]]; then
            value=${1#--board=}
        else
            (($# >= 2)) || {
                printf 'build.sh: --board needs a value\n\n' >&2
                usage >&2
                exit 2
            }
            value=$2
            shift
        fi
        case $value in
        rpi4 | rpi3 | rpi2 | rpi4-irq)
            boards=("$value")
            arches=()
            ;;
        *)
            printf 'build.sh: invalid --board %s (expected rpi4, rpi3, rpi2 or rpi4-irq)\n\n' "$value" >&2
            usage >&2
            exit 2
            ;;
        esac
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        printf 'build.sh: unknown option %s\n\n' "$1" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done
cargo_profile=()
[[ $profile == release ]] && cargo_profile=(--release)

# --- llvm-objcopy ---------------------------------------------------------

host=$(rustc -vV | sed -n 's/^host: //p')
sysroot=$(rustc --print sysroot)
OBJCOPY="$sysroot/lib/rustlib/$host/bin/llvm-objcopy"
OBJDUMP="$sysroot/lib/rustlib/$host/bin/llvm-objdump"
readonly OBJCOPY OBJDUMP
for tool in "$OBJCOPY" "$OBJDUMP"; do
    if [[ ! -x $tool ]]; then
        err "$(basename "$tool") not found at $tool"
        err "install the llvm-tools component:  rustup component add llvm-tools"
        exit 1
    fi
done

# install_if_changed TMP DEST: move TMP to DEST unless DEST already has the
# same content (then drop TMP), so that DEST's mtime only moves on change.
install_if_changed() {
    if [[ -f $2 ]] && cmp -s "$1" "$2"; then
        rm -f "$1"
    else
        mv -f "$1" "$2"
    fi
}

# flat ELF DEST: write the flat binary of ELF to DEST (if it changed).
flat() {
    local tmp="$2.tmp"
    "$OBJCOPY" -O binary "$1" "$tmp"
    if [[ ! -s $tmp ]]; then
        rm -f "$tmp"
        err "llvm-objcopy made an empty image from $1"
        exit 1
    fi
    install_if_changed "$tmp" "$2"
}

# cargo_exes ARGS...: run `cargo build ARGS` (diagnostics on stderr as usual)
# and print the paths of the executables it built, one per line.
cargo_exes() {
    local json
    json=$(cargo build "$@" --message-format=json-render-diagnostics) || return 1
    grep -o '"executable":"[^"]*"' <<<"$json" | sed 's/^"executable":"//; s/"$//' || true
}

# check_arm_fp_free ELF: the ARMv7 hypervisor switches the guests' VFP and
# Advanced SIMD registers lazily, which is only right if its own code never
# touches them. Fails if any VFP or Advanced SIMD instruction (every one's
# UAL mnemonic starts with "v"; literal pools show as .word) lies outside
# the routines that switch the state (hyp/src/cpu/arm/fp.rs).
check_arm_fp_free() {
    local found
    found=$("$OBJDUMP" -d --no-show-raw-insn --triple=armv7a-none-eabi \
        --mattr=+vfp4,+neon,+d32,+virtualization "$1" | awk '
        /^[0-9a-f]+ <.*>:$/ { fn = $2; next }
        /^ *[0-9a-f]+: *\t/ {
            split($0, part, "\t")
            if (part[2] ~ /^v/ && fn !~ /^<hyp_fp_(save|load|ids)>:$/) print fn, $0
        }')
    if [[ -n $found ]]; then
        err "VFP/Advanced SIMD instructions in the hypervisor outside hyp_fp_* (they would clobber guests' registers):"
        head -20 <<<"$found" >&2
        exit 1
    fi
    log "$(basename "$(dirname "$1")")/$(basename "$1"): no VFP/Advanced SIMD instructions outside hyp_fp_*"
}

# size_of, le, check_arm64_header, check_zimage_header
# shellcheck source=scripts/lib/image-headers.sh
source "$ROOT/scripts/lib/image-headers.sh"

# build_arch ARCH: the guest images and the hypervisor of one architecture.
build_arch() {
    local target out
    case $1 in
    aarch64) target=aarch64-unknown-none out=$OUT_ROOT ;;
    arm) target=armv7a-none-eabi out=$OUT_ROOT/arm ;;
    esac
    mkdir -p "$out"

    # --- guest images ---------------------------------------------------------

    log "guest images: cargo build -p guest --target $target ${cargo_profile[*]} --bins"
    if ! guest_exes=$(cargo_exes -p guest --target "$target" "${cargo_profile[@]}" --bins); then
        err "building the guest images failed (see above)"
        exit 1
    fi
    if [[ -z $guest_exes ]]; then
        err "the guest package has no bins"
        exit 1
    fi

    declare -A made=()
    while IFS= read -r exe; do
        name=$(basename "$exe")
        flat "$exe" "$out/guest-$name.bin"
        made["guest-$name.bin"]=1
    done <<<"$guest_exes"

    # Drop images of bins that no longer exist, so the harness never runs a
    # stale one.
    for f in "$out"/guest-*.bin; do
        [[ -e $f ]] || continue
        if [[ -z ${made[$(basename "$f")]:-} ]]; then
            log "removing stale $f"
            rm -f "$f"
        fi
    done

    # --- hypervisor -----------------------------------------------------------

    build_hyp "$target" "$out/hyp.elf" "$out/guest-demo.bin"
    flat "$out/hyp.elf" "$out/hyp.bin"

    # --- checks ---------------------------------------------------------------

    case $1 in
    aarch64) check_arm64_header "$out/hyp.bin" 0x200000 ;;
    arm)
        check_zimage_header "$out/hyp.bin" 0x40010000
        check_arm_fp_free "$out/hyp.elf"
        ;;
    esac
    for f in "$out"/guest-*.bin "$out/hyp.elf" "$out/hyp.bin"; do
        printf 'build: %10d  %s\n' "$(size_of "$f")" "${f#"$ROOT"/}"
    done
}

# build_hyp TARGET ELF DEMO [CARGO_ARGS...]: the hypervisor for TARGET with
# the guest image DEMO built in (none if DEMO does not exist), copied to ELF.
build_hyp() {
    local target=$1 elf=$2 demo=$3 hyp_exes hyp_elf
    shift 3
    if [[ -f $demo ]]; then
        export HYP_DEMO_GUEST=$demo
    else
        unset HYP_DEMO_GUEST
        log "warning: no guest bin 'demo': the hypervisor gets no built-in guest and needs -initrd"
    fi
    log "hypervisor: HYP_DEMO_GUEST=${HYP_DEMO_GUEST:-(unset)} cargo build -p hyp --target $target ${cargo_profile[*]} $*"
    if ! hyp_exes=$(cargo_exes -p hyp --target "$target" "${cargo_profile[@]}" --bin hyp "$@"); then
        err "building the hypervisor failed (see above)"
        exit 1
    fi
    hyp_elf=$(grep '/hyp$' <<<"$hyp_exes" || true)
    if [[ -z $hyp_elf || ! -f $hyp_elf ]]; then
        err "cargo reported no 'hyp' executable (got: ${hyp_exes:-nothing})"
        exit 1
    fi
    cp "$hyp_elf" "$elf.tmp"
    install_if_changed "$elf.tmp" "$elf"
}

# build_board BOARD: the Raspberry Pi image (cargo feature BOARD), with the
# demo guest of its architecture built in (building that first if needed);
# rpi4-irq: the Pi 4 image with the irq guest built in.
build_board() {
    local board=$1 feature=$1 guest=demo target guests image out
    if [[ $board == rpi4-irq ]]; then feature=rpi4 guest=irq; fi
    case $feature in
    rpi4 | rpi3) target=aarch64-unknown-none guests=$OUT_ROOT image=kernel8.img ;;
    rpi2) target=armv7a-none-eabi guests=$OUT_ROOT/arm image=kernel7.img ;;
    esac
    if [[ ! -f $guests/guest-$guest.bin ]]; then
        if [[ $target == aarch64-unknown-none ]]; then build_arch aarch64; else build_arch arm; fi
    fi
    out=$OUT_ROOT/$board
    mkdir -p "$out"
    build_hyp "$target" "$out/hyp.elf" "$guests/guest-$guest.bin" --features "$feature"
    flat "$out/hyp.elf" "$out/$image"
    case $feature in
    rpi4 | rpi3) check_arm64_header "$out/$image" 0x80000 ;;
    rpi2)
        check_zimage_header "$out/$image" 0x8000
        check_arm_fp_free "$out/hyp.elf"
        ;;
    esac
    for f in "$out/hyp.elf" "$out/$image"; do
        printf 'build: %10d  %s\n' "$(size_of "$f")" "${f#"$ROOT"/}"
    done
}

for a in "${arches[@]}"; do
    build_arch "$a"
done
for b in "${boards[@]}"; do
    build_board "$b"
done
