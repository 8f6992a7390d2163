#!/usr/bin/env bash
# Smoke test of the guest runtime on plain QEMU, without the hypervisor:
# the `hello` image runs at EL1 on QEMU `virt` (real PL011 at 0x0900_0000).
#
#   1. -device loader (no DTB, x0 = 0; -m 128M matches the runtime's default
#      RAM size): entry, .bss, stacks, MMU and caches on, vectors (synchronous
#      external aborts from unassigned addresses), console, timer. QEMU's
#      PSCI (HVC) is there, so it powers off.
#   2. -kernel hello.bin -smp 4 (the image's arm64 header makes QEMU load it
#      at 0x4020_0000 and pass a DTB): also the DTB reader, RAM end from the
#      DTB, PSCI CPU_ON of three secondaries on their own stacks, barriers.
#
# The hypervisor calls are detected as absent (HVC is UNDEFINED for them) and
# skipped. Exit status 0 when every run prints "DONE hello PASS".
# Usage: tests/guest/smoke-qemu.sh [--debug]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

profile=release
cargo_profile=(--release)
if [[ ${1:-} == --debug ]]; then
    profile=debug
    cargo_profile=()
fi

cargo build -p guest --bin hello --target aarch64-unknown-none "${cargo_profile[@]}"
host=$(rustc -vV | sed -n 's/^host: //p')
objcopy="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-objcopy"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$objcopy" -O binary "target/aarch64-unknown-none/$profile/hello" "$tmp/hello.bin"

status=0
run() {
    local name=$1
    shift
    echo "== $name"
    local log="$tmp/$name.log"
    timeout 30 qemu-system-aarch64 -M virt -cpu max -nographic -net none \
        -monitor none -serial stdio "$@" </dev/null >"$log" 2>&1 || true
    cat "$log"
    if grep -q "DONE hello PASS" "$log"; then
        echo "== $name: ok"
    else
        echo "== $name: FAILED"
        status=1
    fi
}

run loader -m 128M -device "loader,file=$tmp/hello.bin,addr=0x40200000" \
    -device loader,addr=0x40200000,cpu-num=0
run kernel-smp4 -m 512M -smp 4 -kernel "$tmp/hello.bin"
exit $status
