#!/usr/bin/env bash
# Build the hypervisor and boot it (with an optional guest) under QEMU.
#
# Checks its options, makes sure QEMU and the toolchain are installed
# (scripts/setup.sh), builds out/ (scripts/build.sh), then boots out/hyp.bin
# on QEMU's AArch64 `virt` machine at EL2 (or, with --arch arm, out/arm/hyp.bin
# on the 32-bit `virt` machine in ARMv7 Hyp mode) with the built-in demo
# guest, or with --guest IMAGE as initrd, or with --linux Debian's Linux
# (scripts/linux.sh fetches it once and writes the bundle that is then the
# initrd) to an interactive busybox shell. The serial console is the terminal (Ctrl-A X
# quits QEMU; what is typed goes to vm1, Ctrl-A Ctrl-A 2 gives it to vm2: see
# docs/HYPERVISOR.md, "Console"). The exit status is QEMU's: 0 once the
# hypervisor has powered off after its VMs stopped.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
Usage: scripts/run.sh [OPTIONS]

Build the hypervisor and run it under QEMU.

Options:
  --arch ARCH     CPU architecture: aarch64 (default; qemu-system-aarch64)
                  or arm (32-bit ARMv7-A; qemu-system-arm)
  --smp N         number of virtual CPUs, N >= 1 (default: 1; 4 with --linux)
  --guest IMAGE   guest image to run under the hypervisor, passed as QEMU
                  -initrd: a path, or a name such as "faults" for
                  out/guest-faults.bin (out/arm/guest-faults.bin with
                  --arch arm) (default: the demo guest built into the
                  hypervisor)
  --append ARGS   hypervisor bootargs, e.g. "vms=2 vcpus=4 policy=blocks"
                  (see docs/HYPERVISOR.md, "Configuration")
  --cpu MODEL     QEMU CPU model (default: max for aarch64, e.g. cortex-a57;
                  cortex-a15 for arm, or cortex-a7)
  --linux         boot Debian's Linux to a busybox shell in each VM: runs
                  scripts/linux.sh (which fetches the kernel and busybox
                  on first use) and passes its bundle as -initrd; QEMU
                  then gets -smp 4 (unless --smp is given) and -m 2G.
                  Type `poweroff -f` in the shell to stop the VM
  --vcpus N       with --linux: vCPUs of each VM (default: the --smp value)
  --vms N         with --linux: number of Linux VMs (default: 1)
  --mem SIZE      with --linux: RAM of each VM (default: 512M)
  --cmdline TEXT  with --linux: more kernel command line
  --memstress     with --linux: /bin/memstress in the initramfs, the memory
                  workload of tests/memstress (try `memstress -p 4`)
  --gdb           start QEMU halted with a GDB server on localhost:1234
  --board BOARD   emulated board: rpi4 (QEMU raspi4b, aarch64 only) or
                  rpi3 (QEMU raspi3b) (default: QEMU's generic "virt")
  -h, --help      show this help and exit

Options taking a value also accept the --option=VALUE form.
With --board, QEMU's raspi4b or raspi3b boots out/rpi4/kernel8.img or
out/rpi3/kernel8.img (from scripts/build.sh --board) without a DTB: the
hypervisor runs on its built-in description of the board, with its demo
guest (--guest, --append, --smp and --cpu do not apply: the board has four
Cortex-A72 or A53 cores). A Pi has no PSCI, so the hypervisor halts at the
end instead of powering off: quit with Ctrl-A X.
Exit status: QEMU's (0 after the hypervisor powers off), 1 when setup,
the build or scripts/linux.sh fails, 2 on invalid usage.
EOF
}

# Print MESSAGE and the usage to stderr, exit 2.
usage_error() {
    printf 'run.sh: %s\n\n' "$1" >&2
    usage >&2
    exit 2
}
# shellcheck source=scripts/lib/options.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/options.sh"

arch=aarch64
smp=""
guest=""
linux=0
memstress=0
vcpus=""
vms=""
lmem=""
cmdline=""
append=""
cpu=""
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
    --linux)
        linux=1
        shift
        ;;
    --memstress)
        memstress=1
        shift
        ;;
    --arch | --smp | --guest | --board | --append | --cpu | --vcpus | --vms | --mem | --cmdline)
        (($# >= 2)) || usage_error "option $opt needs a value"
        value=$2
        shift 2
        case $opt in
        --arch)
            check_arch "$value"
            arch=$value
            ;;
        --smp)
            check_count --smp "$value"
            smp=$value
            ;;
        --guest)
            [[ -n $value ]] || usage_error "--guest needs an image path"
            guest=$value
            ;;
        --append)
            append=$value
            ;;
        --cpu)
            [[ -n $value ]] || usage_error "--cpu needs a CPU model"
            cpu=$value
            ;;
        --vcpus | --vms)
            [[ $value =~ ^[1-9][0-9]*$ ]] ||
                usage_error "invalid $opt '$value' (expected a number >= 1)"
            if [[ $opt == --vcpus ]]; then vcpus=$value; else vms=$value; fi
            ;;
        --mem)
            check_size --mem "$value"
            lmem=$value
            ;;
        --cmdline)
            cmdline=$value
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

if [[ $board != virt ]]; then
    [[ -z $guest && -z $append ]] ||
        usage_error "--board runs the built-in demo guest: no --guest or --append"
    [[ ${smp:-1} == 1 && -z $cpu ]] || usage_error "--board fixes the CPUs: no --smp or --cpu"
    ((!linux)) || usage_error "--linux needs QEMU's virt board: no --board"
fi
if ((linux)); then
    [[ -z $guest ]] || usage_error "--linux boots its own bundle: no --guest"
    [[ -n $smp ]] || smp=4
    [[ -n $vcpus ]] || vcpus=$smp
else
    if [[ -n $vcpus$vms$lmem$cmdline ]] || ((memstress)); then
        usage_error "--vcpus, --vms, --mem, --cmdline and --memstress go with --linux"
    fi
    [[ -n $smp ]] || smp=1
fi
if [[ $arch == arm ]]; then
    out=out/arm
    [[ -n $cpu ]] || cpu=cortex-a15
else
    out=out
    [[ -n $cpu ]] || cpu=max
fi
# --guest NAME (no slash) means $out/guest-NAME.bin; a relative path is
# relative to the caller's directory.
if [[ -n $guest ]]; then
    if [[ $guest != */* ]]; then
        guest=$out/guest-${guest%.bin}.bin
    elif [[ $guest != /* ]]; then
        guest=$caller_dir/$guest
    fi
fi

# Options are checked before setup so that --help and typos never install
# anything.
scripts/setup.sh
if [[ $board != virt ]]; then
    scripts/build.sh --board "$board"
    machine=raspi4b
    [[ $board == rpi3 ]] && machine=raspi3b
    qemu=(qemu-system-aarch64 -M "$machine" -nographic -no-reboot -nic none -kernel "out/$board/kernel8.img")
    ((gdb)) && qemu+=(-s -S)
    echo "run.sh: board=$board (QEMU $machine, no DTB: the built-in board description); Ctrl-A X quits QEMU"
    printf 'run.sh: $ %s\n' "${qemu[*]}"
    exec "${qemu[@]}"
fi
scripts/build.sh --arch "$arch"

if ((linux)); then
    guest=$PWD/out/linux/$arch/bundle.cpio
    linux_args=(--arch "$arch" --vcpus "$vcpus" --vms "${vms:-1}" --mem "${lmem:-512M}" --out "$guest")
    [[ -n $cmdline ]] && linux_args+=(--cmdline "$cmdline")
    ((memstress)) && linux_args+=(--memstress)
    scripts/linux.sh "${linux_args[@]}"
fi

if [[ -n $guest && ! -f $guest ]]; then
    echo "run.sh: guest image '$guest' does not exist; the built ones are:" >&2
    ls "$out"/guest-*.bin >&2 || true
    exit 2
fi

if [[ $arch == arm ]]; then
    # ARMv7 CPUs have a GICv2 (QEMU's default for virt).
    qemu=(qemu-system-arm -M "virt,virtualization=on")
else
    qemu=(qemu-system-aarch64 -M "virt,virtualization=on,gic-version=3")
fi
qemu_mem=1G
((linux)) && qemu_mem=2G
qemu+=(
    -cpu "$cpu"
    -smp "$smp"
    -m "$qemu_mem"
    -nographic
    -no-reboot
    -nic none # no default NIC (its boot ROM is not in a minimal QEMU install)
    -kernel "$out/hyp.bin"
)
[[ -n $guest ]] && qemu+=(-initrd "$guest")
[[ -n $append ]] && qemu+=(-append "$append")
if ((gdb)); then
    qemu+=(-s -S)
    echo "run.sh: QEMU waits for a debugger on localhost:1234; attach with:"
    echo "    gdb-multiarch $out/hyp.elf -ex 'target remote :1234'"
fi

if ((linux)); then
    echo "run.sh: Linux in ${vms:-1} VM(s) of $vcpus vCPU(s) and ${lmem:-512M}; in the shell, poweroff -f stops a VM"
fi
echo "run.sh: arch=$arch guest=${guest:-demo (built in)} smp=$smp cpu=$cpu bootargs='$append'; Ctrl-A X quits QEMU"
line="run.sh: \$"
for a in "${qemu[@]}"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then line+=" $a"; else line+=" $(printf '%q' "$a")"; fi
done
printf '%s\n' "$line"
exec "${qemu[@]}"
