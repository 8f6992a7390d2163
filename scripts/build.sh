#!/usr/bin/env bash
# Build the bare-metal images into out/ (see docs/HYPERVISOR.md, "Images and
# build"):
#
#   out/guest-<name>.bin  every bin of the `guest` package (tests/guest), as a
#                         flat image linked at IPA 0x4020_0000
#   out/hyp.elf           the EL2 hypervisor (ELF, for gdb), with the demo
#                         guest (out/guest-demo.bin) built in
#   out/hyp.bin           the same as a flat arm64 Linux image (QEMU -kernel)
#
# Flat images are made with llvm-objcopy from the `llvm-tools` rustup
# component (rust-toolchain.toml lists it). Idempotent and quick when
# everything is up to date: cargo does nothing, and an output file is only
# rewritten when its content changes (so the hypervisor, which embeds
# out/guest-demo.bin, is not rebuilt needlessly).
#
# Usage: scripts/build.sh [--release | --debug]   (default: --release)
# Exit status: 0 on success, 1 when a build or a check fails, 2 on bad usage.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
readonly ROOT
readonly TARGET=aarch64-unknown-none
readonly OUT="$ROOT/out"

log() { printf 'build: %s\n' "$*"; }
err() { printf 'build: error: %s\n' "$*" >&2; }

usage() {
    cat <<'EOF'
Usage: scripts/build.sh [--release | --debug]

Build the guest test images and the hypervisor for aarch64-unknown-none and
write out/guest-<name>.bin, out/hyp.elf and out/hyp.bin.

Options:
  --release   optimised build (default)
  --debug     unoptimised (dev profile) build
  -h, --help  show this help and exit
EOF
}

profile=release
while (($#)); do
    case $1 in
    --release) profile=release ;;
    --debug) profile=debug ;;
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
readonly OBJCOPY
if [[ ! -x $OBJCOPY ]]; then
    err "llvm-objcopy not found at $OBJCOPY"
    err "install the llvm-tools component:  rustup component add llvm-tools"
    exit 1
fi

mkdir -p "$OUT"

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

size_of() { wc -c <"$1" | tr -d ' '; }

# le BYTES FILE OFFSET: the little-endian unsigned integer of BYTES bytes at
# OFFSET in FILE.
le() {
    local -a b
    read -r -a b <<<"$(od -An -v -tu1 -j "$3" -N "$1" "$2")"
    local i v=0
    for ((i = $1 - 1; i >= 0; i--)); do
        v=$(((v << 8) | b[i]))
    done
    printf '%d\n' "$v"
}

# --- guest images ---------------------------------------------------------

log "guest images: cargo build -p guest --target $TARGET ${cargo_profile[*]} --bins"
if ! guest_exes=$(cargo_exes -p guest --target "$TARGET" "${cargo_profile[@]}" --bins); then
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
    flat "$exe" "$OUT/guest-$name.bin"
    made["guest-$name.bin"]=1
done <<<"$guest_exes"

# Drop images of bins that no longer exist, so the harness never runs a
# stale one.
for f in "$OUT"/guest-*.bin; do
    [[ -e $f ]] || continue
    if [[ -z ${made[$(basename "$f")]:-} ]]; then
        log "removing stale $f"
        rm -f "$f"
    fi
done

# --- hypervisor -----------------------------------------------------------

demo="$OUT/guest-demo.bin"
if [[ -f $demo ]]; then
    export HYP_DEMO_GUEST=$demo
else
    unset HYP_DEMO_GUEST
    log "warning: no guest bin 'demo': the hypervisor gets no built-in guest and needs -initrd"
fi

log "hypervisor: HYP_DEMO_GUEST=${HYP_DEMO_GUEST:-(unset)} cargo build -p hyp --target $TARGET ${cargo_profile[*]}"
if ! hyp_exes=$(cargo_exes -p hyp --target "$TARGET" "${cargo_profile[@]}" --bin hyp); then
    err "building the hypervisor failed (see above)"
    exit 1
fi
hyp_elf=$(grep '/hyp$' <<<"$hyp_exes" || true)
if [[ -z $hyp_elf || ! -f $hyp_elf ]]; then
    err "cargo reported no 'hyp' executable (got: ${hyp_exes:-nothing})"
    exit 1
fi

cp "$hyp_elf" "$OUT/hyp.elf.tmp"
install_if_changed "$OUT/hyp.elf.tmp" "$OUT/hyp.elf"
flat "$OUT/hyp.elf" "$OUT/hyp.bin"

# --- checks ---------------------------------------------------------------

# The arm64 Linux image header (Documentation/arch/arm64/booting.rst):
# code0 at 0 (here a branch over the header), text_offset at 8, image_size
# at 16, magic "ARM\x64" at 56.
bin="$OUT/hyp.bin"
if (($(size_of "$bin") < 64)); then
    err "$bin is smaller than the 64-byte arm64 image header"
    exit 1
fi
code0=$(le 4 "$bin" 0)
if (((code0 >> 26) != 0x05)); then
    err "$bin does not start with a branch (B): first word is $(printf '%#010x' "$code0")"
    exit 1
fi
magic=$(le 4 "$bin" 56)
if ((magic != 0x644d5241)); then
    err "$bin has no arm64 image magic \"ARM\\x64\" at offset 56 (found $(printf '%#010x' "$magic"))"
    exit 1
fi
text_offset=$(le 8 "$bin" 8)
image_size=$(le 8 "$bin" 16)

log "arm64 image header ok: text_offset $(printf '%#x' "$text_offset"), image_size $image_size bytes (with BSS)"
for f in "$OUT"/guest-*.bin "$OUT/hyp.elf" "$OUT/hyp.bin"; do
    printf 'build: %10d  %s\n' "$(size_of "$f")" "${f#"$ROOT"/}"
done
