#!/usr/bin/env bash
# Smoke test of the guest runtime on plain QEMU, without the hypervisor:
# the `hello` image runs on QEMU `virt` (real PL011 at 0x0900_0000), at EL1
# (AArch64) or in SVC mode (ARM32).
#
# AArch64 (qemu-system-aarch64 -cpu max):
#   1. -device loader (no DTB, x0 = 0; -m 128M matches the runtime's default
#      RAM size): entry, .bss, stacks, MMU and caches on, vectors (synchronous
#      external aborts from unassigned addresses), console, timer. QEMU's
#      PSCI (HVC) is there, so it powers off.
#   2. -kernel hello.bin -smp 4 (the image's arm64 header makes QEMU load it
#      at 0x4020_0000 and pass a DTB): also the DTB reader, RAM end from the
#      DTB, PSCI CPU_ON of three secondaries on their own stacks, barriers.
#
# ARM32 (qemu-system-arm -cpu cortex-a15, LPAE; no EL2, so QEMU answers PSCI
# over HVC itself):
#   1. -device loader of the flat image at 0x4020_0000: entered at its first
#      byte; r1 = r2 = 0, so the runtime looks for the DTB at the start of
#      RAM, where QEMU puts it.
#   2. -kernel hello (the ELF) -smp 4: as above, plus PSCI CPU_ON (SMC32) of
#      three secondaries.
#   3. -kernel hello.uimg -smp 2: the flat image wrapped in a U-Boot legacy
#      header (type Linux kernel, load and entry 0x4020_0000), so QEMU boots
#      it with the Linux ARM boot registers of the guest contract: r0 = 0,
#      r1 = 0xffff_ffff, r2 = the DTB, which it puts after the image (the
#      banner must not show it at the start of RAM).
#
# The hypervisor calls are detected as absent (HVC is UNDEFINED for them) and
# skipped. Exit status 0 when every run prints "DONE hello PASS".
# Usage: tests/guest/smoke-qemu.sh [--debug] [--arch aarch64|arm|all]
#        (default: aarch64)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

profile=release
cargo_profile=(--release)
arch=aarch64
while (($#)); do
    case $1 in
    --debug)
        profile=debug
        cargo_profile=()
        ;;
    --arch)
        arch=${2:?--arch needs aarch64, arm or all}
        shift
        ;;
    *)
        echo "usage: $0 [--debug] [--arch aarch64|arm|all]" >&2
        exit 2
        ;;
    esac
    shift
done
case $arch in
aarch64 | arm | all) ;;
*)
    echo "smoke-qemu.sh: unknown --arch $arch (aarch64, arm or all)" >&2
    exit 2
    ;;
esac

host=$(rustc -vV | sed -n 's/^host: //p')
objcopy="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-objcopy"
target_dir=${CARGO_TARGET_DIR:-target}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# build TARGET: the hello ELF for TARGET, and its flat image as $tmp/hello-TARGET.bin.
build() {
    cargo build -p guest --bin hello --target "$1" "${cargo_profile[@]}"
    "$objcopy" -O binary "$target_dir/$1/$profile/hello" "$tmp/hello-$1.bin"
}

status=0
# run NAME QEMU REJECT [QEMU ARGS...]: runs QEMU, passes when the log has
# "DONE hello PASS" and (unless REJECT is empty) no line matching REJECT.
run() {
    local name=$1 qemu=$2 reject=$3
    shift 3
    echo "== $name"
    local log="$tmp/$name.log"
    timeout 30 "$qemu" -M virt -nographic -nic none -monitor none -serial stdio "$@" \
        </dev/null >"$log" 2>&1 || true
    cat "$log"
    if grep -q "DONE hello PASS" "$log" && { [[ -z $reject ]] || ! grep -Eq "$reject" "$log"; }; then
        echo "== $name: ok"
    else
        echo "== $name: FAILED"
        status=1
    fi
}

# uimage IN OUT LOAD: wraps the flat image IN in a U-Boot legacy header (OS
# Linux, ARM, kernel, uncompressed, load and entry address LOAD).
uimage() {
    python3 - "$@" <<'EOF'
import struct, sys, zlib
src, dst, load = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
data = open(src, "rb").read()
def header(hcrc):
    return struct.pack(">7I4B32s", 0x27051956, hcrc, 0, len(data), load, load,
                       zlib.crc32(data), 5, 2, 2, 0, b"hello")
open(dst, "wb").write(header(zlib.crc32(header(0))) + data)
EOF
}

if [[ $arch == aarch64 || $arch == all ]]; then
    t=aarch64-unknown-none
    build $t
    run aarch64-loader qemu-system-aarch64 "" -cpu max -m 128M \
        -device "loader,file=$tmp/hello-$t.bin,addr=0x40200000" \
        -device loader,addr=0x40200000,cpu-num=0
    run aarch64-kernel-smp4 qemu-system-aarch64 "" -cpu max -m 512M -smp 4 \
        -kernel "$tmp/hello-$t.bin"
fi

if [[ $arch == arm || $arch == all ]]; then
    t=armv7a-none-eabi
    build $t
    run arm-loader qemu-system-arm "" -cpu cortex-a15 -m 128M \
        -device "loader,file=$tmp/hello-$t.bin,addr=0x40200000" \
        -device loader,addr=0x40200000,cpu-num=0
    run arm-elf-smp4 qemu-system-arm "" -cpu cortex-a15 -m 512M -smp 4 \
        -kernel "$target_dir/$t/$profile/hello"
    uimage "$tmp/hello-$t.bin" "$tmp/hello-$t.uimg" 0x40200000
    run arm-uimage-smp2 qemu-system-arm "DTB 0x40000000," -cpu cortex-a15 -m 512M -smp 2 \
        -kernel "$tmp/hello-$t.uimg"
fi
exit $status
