#!/usr/bin/env bash
# Run every test of the project, from the repository root, failing fast.
#
# Steps (each announced with a "==> [n/N] ..." header):
#   setup       scripts/setup.sh: QEMU >= 9 and the pinned Rust toolchain
#   fmt         cargo fmt --all --check
#   clippy      host (whole workspace, all targets); hyp, arch and guest, and
#               the mmu crate alone, for aarch64-unknown-none and
#               armv7a-none-eabi
#   build       mmu for both bare-metal targets, release; then
#               scripts/build.sh: guest images and the hypervisor in out/
#               (AArch64) and out/arm/ (ARM32)
#   test        cargo test --workspace (host) except the QEMU harness, with
#               cargo's normal output
#   QEMU        cargo test -p harness: boots out/hyp.bin with every guest
#               image under qemu-system-aarch64 (tests/tests/qemu.rs), then
#               out/arm/hyp.bin in ARMv7 Hyp mode with the ARM32 images under
#               qemu-system-arm (tests/tests/qemu_arm.rs), then the Raspberry
#               Pi images on QEMU raspi4b/raspi3b (tests/tests/qemu_rpi.rs),
#               at most two QEMU instances at a time; then Debian's
#               Linux as a guest (tests/tests/linux.rs, fetching the
#               kernel and busybox once through APT), and U-Boot
#               (tests/tests/uboot.rs, u-boot-qemu fetched once)
#   loom        the loom models of mmu (mmu/tests/loom_*.rs), --cfg loom
#   miri        cargo +nightly miri test on mmu, or a plain "skipped" line
#               where the nightly miri component cannot be installed
#
# Each step has an id (shown in brackets in its header; --list prints
# them). A selection names ids or their prefixes, so "clippy" is every
# clippy step and "qemu" every QEMU harness step:
#   scripts/test.sh --only mmu-test         just one step
#   scripts/test.sh --only clippy,doc       several
#   scripts/test.sh --from qemu             a step and everything after it
#   scripts/test.sh --list                  the ids, in order
# (the quick inner loop while working on mmu: TEST_QUICK=1
#  scripts/test.sh --only fmt,clippy-host,test).
#
# Environment:
#   TEST_QUICK=1  skip scripts/setup.sh, for developers who already have
#                 QEMU >= 9 and the pinned toolchain: the run then never
#                 touches APT or rustup. CI leaves it unset so that a fresh
#                 machine gets QEMU.
#
# Ends with one summary line; exit status is that of the first failing step
# (0 when all pass; 2 for bad usage).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly BARE_METAL_TARGETS=(aarch64-unknown-none armv7a-none-eabi)

ids=()     # step ids, in order
steps=()   # titles
cmds=()    # matching commands, as single strings for `eval`

# add ID TITLE COMMAND: queue a step. COMMAND is one string (eval'ed) so
# steps can set environment variables, e.g. 'RUSTFLAGS="--cfg loom" cargo
# test'.
add() {
    ids+=("$1")
    steps+=("$2")
    cmds+=("$3")
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

only="" from="" list=0
while (($#)); do
    case $1 in
        --only) only=${2:?--only needs step ids}; shift 2 ;;
        --from) from=${2:?--from needs a step id}; shift 2 ;;
        --list) list=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "test.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ ${TEST_QUICK:-0} == 1 ]]; then
    echo "TEST_QUICK=1: skipping scripts/setup.sh"
else
    add setup "setup (QEMU, Rust toolchain)" "scripts/setup.sh"
fi

add fmt "rustfmt" "cargo fmt --all --check"
add clippy-host "clippy (host, workspace)" "cargo clippy --workspace --all-targets -- -D warnings"
for target in "${BARE_METAL_TARGETS[@]}"; do
    add "clippy-hyp-${target%%-*}" "clippy (hyp, arch, guest; $target)" \
        "cargo clippy -p hyp -p arch -p guest --target $target -- -D warnings"
done
for target in "${BARE_METAL_TARGETS[@]}"; do
    add "clippy-mmu-${target%%-*}" "clippy (mmu, $target)" \
        "cargo clippy -p mmu --target $target -- -D warnings"
done
# The Linux guests' memory workload, for the guests' targets (linkers in
# .cargo/config.toml).
for target in aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf; do
    add "clippy-memstress-${target%%-*}" "clippy (memstress, $target)" \
        "cargo clippy -p memstress --target $target -- -D warnings"
done
add doc "documentation (cargo doc, warnings denied)" \
    'RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items'
add package "mmu as a crate (cargo package: the packaged crate builds alone)" \
    "cargo package -p mmu --allow-dirty"
for target in "${BARE_METAL_TARGETS[@]}"; do
    add "build-mmu-${target%%-*}" "build (mmu, $target, release)" \
        "cargo build -p mmu --target $target --release"
done
add build "build (guest images and hypervisor into out/, release)" "scripts/build.sh"
# The QEMU harness is a workspace member too (a plain `cargo test
# --workspace` runs it, building out/ itself); here it is a step of its own
# so that its output stands apart and its parallelism is explicit.
add test "unit and integration tests (host)" "cargo test --workspace --exclude harness"
add qemu-aarch64 "QEMU harness, AArch64 (hypervisor at EL2 and guest images on qemu-system-aarch64)" \
    "cargo test -p harness --lib --bins --test qemu -- --test-threads=2"
add qemu-arm "QEMU harness, ARM32 (hypervisor in ARMv7 Hyp mode, guests in SVC mode, qemu-system-arm)" \
    "cargo test -p harness --test qemu_arm -- --test-threads=2"
add qemu-rpi "QEMU harness, Raspberry Pi (raspi4b, raspi3b; the Pi 2 image checked)" \
    "cargo test -p harness --test qemu_rpi -- --test-threads=2"
# Debian's Linux under the hypervisor (tests/tests/linux.rs): the first
# test fetches the kernel and busybox through APT into a cache outside the
# repository (scripts/linux.sh), which needs the network once.
add qemu-linux "QEMU harness, Linux guests (Debian's arm64 and armmp-lpae kernels to a busybox shell)" \
    "cargo test -p harness --test linux -- --test-threads=2"
# U-Boot (Debian's u-boot-qemu, fetched once through APT by
# scripts/uboot.sh) as a guest on both architectures, and booting Linux.
add qemu-uboot "QEMU harness, U-Boot guests (qemu_arm64 and qemu_arm to their prompt, booti/bootz Linux)" \
    "cargo test -p harness --test uboot -- --test-threads=2"

# Loom models of the mmu concurrency code (mmu/tests/loom_*.rs: RCU grace
# periods, pte_offset_map_lock and rw_nolock against a detach), release
# because loom is slow unoptimised, in a separate target dir so that the
# --cfg loom build does not invalidate the normal one. They print nothing
# on success; LOOM_COVERAGE=1 with -- --nocapture prints what they explored.
add loom "loom models (mmu: RCU, pte_offset_map_lock, rw_nolock, adjust_pte vs collapse)" \
    'CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" cargo test -p mmu --release --test loom_rcu --test loom_map_lock --test loom_rw_nolock --test loom_adjust_pte'

# Miri (undefined-behaviour checks of mmu's unsafe code: the RCU callback
# list in the unit tests; raw table memory, the walker's run slices and the
# accessors' references into it in mmu/tests/miri_smoke.rs, which takes
# Miri seconds where each of the other integration tests takes minutes) on
# the nightly toolchain, which overrides rust-toolchain.toml's pin. Adds the
# miri and rust-src components to an installed nightly once if they are
# missing (not with TEST_QUICK=1, which never touches rustup); where that
# cannot be done (no nightly, offline), the step says so and passes.
miri_mmu() {
    local installed
    installed=$(rustup +nightly component list --installed 2>/dev/null || true)
    if [[ ${TEST_QUICK:-0} != 1 && ($installed != *miri* || $installed != *rust-src*) ]]; then
        rustup +nightly component add miri rust-src >/dev/null 2>&1 || true
        installed=$(rustup +nightly component list --installed 2>/dev/null || true)
    fi
    if [[ $installed != *miri* || $installed != *rust-src* ]]; then
        echo "miri: skipped (nightly miri component not installable here)"
        return 0
    fi
    cargo +nightly miri test -p mmu --lib --test miri_smoke
}
add miri "miri (mmu: unit tests, table-memory smoke test)" "miri_mmu"

# matches ID LIST: whether ID is, or starts with, one of the
# comma-separated LIST.
matches() {
    local id=$1 sel
    IFS=, read -ra sel <<<"$2"
    for s in "${sel[@]}"; do
        [[ $id == "$s"* ]] && return 0
    done
    return 1
}

if ((list)); then
    for i in "${!ids[@]}"; do
        printf '%-18s %s\n' "${ids[i]}" "${steps[i]}"
    done
    exit 0
fi

# The selection: --from drops the steps before the first match, --only
# keeps the matches.
chosen=()
started=$([[ -z $from ]] && echo 1 || echo 0)
for i in "${!ids[@]}"; do
    if ((!started)) && matches "${ids[i]}" "$from"; then
        started=1
    fi
    if ((started)) && { [[ -z $only ]] || matches "${ids[i]}" "$only"; }; then
        chosen+=("$i")
    fi
done
if ((${#chosen[@]} == 0)); then
    echo "test.sh: no step matches (--only '$only' --from '$from'); see --list" >&2
    exit 2
fi

total=${#chosen[@]}
start_all=$SECONDS
n=0
for i in "${chosen[@]}"; do
    n=$((n + 1))
    printf '\n==> [%d/%d] %s [%s]\n==> $ %s\n' "$n" "$total" "${steps[i]}" "${ids[i]}" "${cmds[i]}"
    start=$SECONDS
    status=0
    eval "${cmds[i]}" || status=$?
    if ((status != 0)); then
        printf '\n==> FAILED: step %d/%d "%s" (exit %d, after %ds total)\n' \
            "$n" "$total" "${steps[i]}" "$status" "$((SECONDS - start_all))"
        exit "$status"
    fi
    printf '==> ok (%ds)\n' "$((SECONDS - start))"
done

printf '\n==> PASSED: all %d steps in %ds\n' "$total" "$((SECONDS - start_all))"
