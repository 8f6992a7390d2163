#!/usr/bin/env bash
# Build the hypervisor and boot it (with an optional guest) under QEMU.
#
# The hypervisor does not exist yet: it arrives with the AArch64 hypervisor
# issue. Until then this script validates its options, makes sure QEMU and
# the toolchain are installed (scripts/setup.sh) and says so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
Usage: scripts/run.sh [OPTIONS]

Build the hypervisor and run it under QEMU.

Options:
  --arch ARCH     CPU architecture: aarch64 (default; qemu-system-aarch64)
                  or arm (32-bit ARMv7-A; qemu-system-arm)
  --smp N         number of virtual CPUs, N >= 1 (default: 1)
  --guest IMAGE   guest kernel image to start under the hypervisor
                  (default: none, the hypervisor boots alone)
  --gdb           start QEMU halted with a GDB server on localhost:1234
  --board BOARD   emulated board: rpi4 (QEMU raspi4b, aarch64 only) or
                  rpi3 (QEMU raspi3b) (default: QEMU's generic "virt")
  -h, --help      show this help and exit

Options taking a value also accept the --option=VALUE form.
Exit status: 0 on success, 2 on invalid usage.
EOF
}

# Print MESSAGE and the usage to stderr, exit 2.
usage_error() {
    printf 'run.sh: %s\n\n' "$1" >&2
    usage >&2
    exit 2
}

arch=aarch64
smp=1
guest=""
gdb=0
board=virt

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
    --gdb)
        gdb=1
        shift
        ;;
    --arch | --smp | --guest | --board)
        (($# >= 2)) || usage_error "option $opt needs a value"
        value=$2
        shift 2
        case $opt in
        --arch)
            [[ $value == aarch64 || $value == arm ]] ||
                usage_error "invalid --arch '$value' (expected aarch64 or arm)"
            arch=$value
            ;;
        --smp)
            [[ $value =~ ^[1-9][0-9]*$ ]] ||
                usage_error "invalid --smp '$value' (expected a number >= 1)"
            smp=$value
            ;;
        --guest)
            [[ -n $value ]] || usage_error "--guest needs an image path"
            guest=$value
            ;;
        --board)
            [[ $value == rpi4 || $value == rpi3 ]] ||
                usage_error "invalid --board '$value' (expected rpi4 or rpi3)"
            board=$value
            ;;
        esac
        ;;
    *)
        usage_error "unknown option '$opt'"
        ;;
    esac
done

if [[ $board == rpi4 && $arch != aarch64 ]]; then
    usage_error "--board rpi4 needs --arch aarch64"
fi

# Options are checked before setup so that --help and typos never install
# anything.
scripts/setup.sh

echo "run.sh: configuration: arch=$arch smp=$smp board=$board guest=${guest:-none} gdb=$gdb"
echo "run.sh: the hypervisor is not built yet (it arrives with the AArch64 hypervisor issue); nothing to run."
exit 0
