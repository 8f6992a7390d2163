#!/usr/bin/env bash
# Write the boot folder for a Raspberry Pi's SD card (its FAT boot
# partition): the hypervisor image under the name the firmware loads, a
# config.txt with the keys the hypervisor needs, and a README.txt saying
# which firmware files to add, how to wire the serial console and what it
# prints. See docs/RASPBERRY-PI.md.
#
#   --board rpi4   out/rpi4/kernel8.img -> OUTDIR/kernel8.img (AArch64, EL2)
#   --board rpi3   out/rpi3/kernel8.img -> OUTDIR/kernel8.img (AArch64, EL2)
#   --board rpi2   out/rpi2/kernel7.img -> OUTDIR/kernel7.img (ARMv7 Hyp mode)
#
# The image comes from `scripts/build.sh --board BOARD`, or, with
# RPI_IMAGE=path, from that file (the build is skipped). Its header is
# checked: the arm64 image header (magic "ARM\x64" at 56, text_offset
# 0x80000) for kernel8.img, the zImage header (magic 0x016f2818 at 0x24,
# load address 0x8000 at 0x28, end address at 0x2c) for kernel7.img.
# Idempotent: creates OUTDIR and overwrites the three files in it; nothing
# else in OUTDIR is touched. The firmware files are not included (README.txt
# lists them).
#
# Exit status: 0 on success, 1 when the build or a check fails, 2 on bad
# usage.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
readonly ROOT caller_dir

log() { printf 'rpi-image: %s\n' "$*"; }
err() { printf 'rpi-image: error: %s\n' "$*" >&2; }

usage() {
    cat <<'EOF'
Usage: scripts/rpi-image.sh --board rpi4|rpi3|rpi2 OUTDIR

Build the hypervisor for a Raspberry Pi (scripts/build.sh --board BOARD) and
write the boot folder for the SD card's FAT partition into OUTDIR:

  kernel8.img (rpi4, rpi3) or kernel7.img (rpi2)   the hypervisor image
  config.txt                                       firmware settings
  cmdline.txt                                      the hypervisor's bootargs
  README.txt                                       firmware files to add,
                                                   wiring, expected output

Options:
  --board BOARD   rpi4 (Raspberry Pi 4 Model B), rpi3 (Raspberry Pi 3 Model
                  B/B+) or rpi2 (Raspberry Pi 2 Model B, ARMv7 Hyp mode)
  -h, --help      show this help and exit

Environment:
  RPI_IMAGE=PATH  use this image instead of building one (scripts/build.sh
                  is not run); it must have the board's header

OUTDIR is created if needed; its kernel image, config.txt, cmdline.txt and
README.txt are overwritten. See docs/RASPBERRY-PI.md for the whole bring-up.
Exit status: 0 on success, 1 when the build or a check fails, 2 on bad usage.
EOF
}

usage_error() {
    printf 'rpi-image.sh: %s\n\n' "$1" >&2
    usage >&2
    exit 2
}

board=""
outdir=""
while (($#)); do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --board | --board=*)
        if [[ $1 == --board=* ]]; then
            value=${1#--board=}
        else
            (($# >= 2)) || usage_error "--board needs a value"
            value=$2
            shift
        fi
        case $value in
        rpi4 | rpi3 | rpi2) board=$value ;;
        *) usage_error "invalid --board '$value' (expected rpi4, rpi3 or rpi2)" ;;
        esac
        ;;
    -*)
        usage_error "unknown option '$1'"
        ;;
    *)
        [[ -z $outdir ]] || usage_error "more than one OUTDIR ('$outdir', '$1')"
        outdir=$1
        ;;
    esac
    shift
done
[[ -n $board ]] || usage_error "--board is required"
[[ -n $outdir ]] || usage_error "OUTDIR is required"

# Relative paths are the caller's.
[[ $outdir == /* ]] || outdir=$caller_dir/$outdir

case $board in
rpi4 | rpi3) kernel=kernel8.img other_kernel=kernel7.img ;;
rpi2) kernel=kernel7.img other_kernel=kernel8.img ;;
esac

# --- the image ---------------------------------------------------------------

if [[ -n ${RPI_IMAGE:-} ]]; then
    image=$RPI_IMAGE
    [[ $image == /* ]] || image=$caller_dir/$image
    log "RPI_IMAGE=$image: using it, scripts/build.sh is not run"
else
    log "building: scripts/build.sh --board $board"
    status=0
    scripts/build.sh --board "$board" || status=$?
    if ((status == 2)); then
        err "scripts/build.sh rejected '--board $board' (exit status 2: bad usage);"
        err "this checkout's build.sh may not know --board yet. Build the image"
        err "another way and pass it with RPI_IMAGE=path (see --help)."
        exit 1
    elif ((status != 0)); then
        err "scripts/build.sh --board $board failed (exit status $status)"
        exit 1
    fi
    image=$ROOT/out/$board/$kernel
fi

if [[ ! -f $image ]]; then
    err "no image at $image"
    exit 1
fi

# size_of, le, check_arm64_header, check_zimage_header
# shellcheck source=scripts/lib/image-headers.sh
source "$ROOT/scripts/lib/image-headers.sh"

if [[ ! -s $image ]]; then
    err "$image is empty"
    exit 1
fi
case $kernel in
# config.txt loads kernel8.img at 0x80000 and kernel7.img at 0x8000,
# where the hypervisor is linked for the Pis.
kernel8.img) check_arm64_header "$image" 0x80000 ;;
kernel7.img) check_zimage_header "$image" 0x8000 ;;
esac

# --- config.txt --------------------------------------------------------------

config_rpi4() {
    cat <<'EOF'
# config.txt for the s2hyp hypervisor on a Raspberry Pi 4 Model B (BCM2711).
# Written by scripts/rpi-image.sh --board rpi4; docs/RASPBERRY-PI.md explains
# each key. The boot EEPROM and start4.elf read it from the FAT partition.

# Start the Cortex-A72 cores in AArch64 state; the firmware's stub enters
# the image at EL2 with the DTB address in x0.
arm_64bit=1

# The image to load (the 64-bit default, named so that no kernel7l.img or
# other kernel on the card is taken instead).
kernel=kernel8.img

# Load it at 0x80000, where the hypervisor is linked (its arm64 header says
# text_offset 0x80000). Without this key the documented default for 64-bit
# kernels is 0x200000.
kernel_address=0x80000

# Interrupts through the GIC-400 (distributor at 0xFF841000), not the
# legacy interrupt controller. 1 is the Pi 4's default; stated here.
enable_gic=1

# Enable the primary UART on GPIO 14 (TXD, header pin 8) and GPIO 15 (RXD,
# pin 10), set up by the firmware at 115200 baud.
enable_uart=1

# Disable Bluetooth so that GPIO 14/15 carry the PL011 (UART0, 0xFE201000)
# instead of the mini UART; the hypervisor's console is that PL011.
# Needs overlays/disable-bt.dtbo on the card.
dtoverlay=disable-bt

# arm_peri_high is left unset: in low-peripheral mode the peripherals stay
# below 4 GiB (PL011 0xFE201000, GIC-400 0xFF841000).

# Debugging aid: the boot EEPROM and start4.elf log to UART0 as well.
#uart_2ndstage=1
EOF
}

config_rpi3() {
    cat <<'EOF'
# config.txt for the s2hyp hypervisor on a Raspberry Pi 3 Model B or B+
# (BCM2837). Written by scripts/rpi-image.sh --board rpi3;
# docs/RASPBERRY-PI.md explains each key. bootcode.bin and start.elf read it
# from the FAT partition.

# Start the Cortex-A53 cores in AArch64 state (the Pi 3 defaults to 32-bit);
# the firmware's stub enters the image at EL2 with the DTB address in x0.
arm_64bit=1

# The image to load.
kernel=kernel8.img

# Load it at 0x80000, where the hypervisor is linked (its arm64 header says
# text_offset 0x80000). Without this key the documented default for 64-bit
# kernels is 0x200000.
kernel_address=0x80000

# Enable the primary UART on GPIO 14 (TXD, header pin 8) and GPIO 15 (RXD,
# pin 10), set up by the firmware at 115200 baud.
enable_uart=1

# Disable Bluetooth so that GPIO 14/15 carry the PL011 (UART0, 0x3F201000)
# instead of the mini UART; the hypervisor's console is that PL011.
# Needs overlays/disable-bt.dtbo on the card.
dtoverlay=disable-bt

# The BCM2837 has no GIC (its interrupts go through the BCM2836-style local
# controller); enable_gic is a Pi 4 key and is not used here.

# Debugging aid: bootcode.bin and start.elf log to UART0 as well.
#uart_2ndstage=1
EOF
}

config_rpi2() {
    cat <<'EOF'
# config.txt for the s2hyp hypervisor on a Raspberry Pi 2 Model B (BCM2836,
# ARMv7). Written by scripts/rpi-image.sh --board rpi2; docs/RASPBERRY-PI.md
# explains each key. bootcode.bin and start.elf read it from the FAT
# partition.

# The image to load: a 32-bit zImage-style image. The firmware's 32-bit stub
# enters it in Hyp mode with r0 = 0, r1 = machine type, r2 = the DTB address.
kernel=kernel7.img

# Load it at 0x8000, where the hypervisor is linked (its zImage header says
# so); this is also the documented default for 32-bit kernels.
kernel_address=0x8000

# Enable the primary UART on GPIO 14 (TXD, header pin 8) and GPIO 15 (RXD,
# pin 10). On the Pi 2 (no Bluetooth) that is already the PL011 (UART0,
# 0x3F201000), so no overlay is needed.
enable_uart=1

# Debugging aid: bootcode.bin and start.elf log to UART0 as well.
#uart_2ndstage=1
EOF
}

# --- README.txt --------------------------------------------------------------

readme() {
    local model firmware dtbs
    case $board in
    rpi4)
        model="Raspberry Pi 4 Model B"
        firmware="start4.elf fixup4.dat"
        dtbs="bcm2711-rpi-4-b.dtb"
        ;;
    rpi3)
        model="Raspberry Pi 3 Model B / B+"
        firmware="bootcode.bin start.elf fixup.dat"
        dtbs="bcm2710-rpi-3-b.dtb bcm2710-rpi-3-b-plus.dtb"
        ;;
    rpi2)
        model="Raspberry Pi 2 Model B"
        firmware="bootcode.bin start.elf fixup.dat"
        dtbs="bcm2709-rpi-2-b.dtb bcm2710-rpi-2-b.dtb"
        ;;
    esac
    local files="$firmware $dtbs"
    [[ $board == rpi2 ]] || files+=" overlays/disable-bt.dtbo"

    local title="s2hyp boot folder for the $model"
    printf '%s\n%s\n\n' "$title" "${title//?/=}"
    cat <<EOF
Written by scripts/rpi-image.sh --board $board. The whole bring-up, and what
to do when nothing appears on the console, is in docs/RASPBERRY-PI.md.

1. Files in this folder

   $kernel   the hypervisor, with its demo guest built in
   config.txt    firmware settings (each key commented)
   cmdline.txt   the hypervisor's bootargs, after "--" (the firmware puts its
                 own Linux options before them, which the hypervisor skips),
                 e.g. "-- vms=2 vcpus=2" (docs/HYPERVISOR.md, Configuration)
   README.txt    this file

2. Firmware files to add

   From the boot/ folder of the Raspberry Pi firmware release
   (https://github.com/raspberrypi/firmware, branch master or a release
   tag), copied next to $kernel with the same relative paths:

EOF
    local f
    for f in $files; do
        printf '       %s\n' "$f"
    done
    case $board in
    rpi4) cat <<'EOF'

   (The Pi 4 has no bootcode.bin: its first stage is in the on-board boot
   EEPROM.)
EOF
        ;;
    rpi3) cat <<'EOF'

   (The firmware picks the DTB that matches the board: -b for the 3B, -b-plus
   for the 3B+.)
EOF
        ;;
    rpi2) cat <<'EOF'

   (bcm2709-rpi-2-b.dtb is for the BCM2836 boards; the Pi 2 Model B v1.2 has
   a BCM2837 and uses bcm2710-rpi-2-b.dtb. The firmware picks the right one.
   The firmware enters kernel7.img in Hyp mode: its 32-bit stub switches the
   core to non-secure Hyp mode before jumping to the image. Very old firmware
   entered in SVC mode, which the hypervisor refuses; use a current release.)
EOF
        ;;
    esac
    cat <<EOF

   For example, from inside this folder:

     base=https://github.com/raspberrypi/firmware/raw/master/boot
     for f in $files; do
         mkdir -p "\$(dirname "\$f")"
         curl -fL -o "\$f" "\$base/\$f"
     done

   Then copy everything in this folder to the SD card's first partition
   (FAT32, MBR partition table).

3. Serial console wiring (3.3 V only)

   Use a USB serial adapter with 3.3 V logic levels. Never 5 V: the Pi's
   GPIOs are not 5 V tolerant. Do not connect the adapter's power pin; the
   Pi has its own supply.

     adapter GND  ->  header pin 6  (GND)
     adapter RX   ->  header pin 8  (GPIO 14, TXD: the Pi transmits)
     adapter TX   ->  header pin 10 (GPIO 15, RXD: the Pi receives)

4. Watching the console

   115200 baud, 8 data bits, no parity, 1 stop bit (8N1), no flow control.
   Start the terminal before powering the Pi:

     screen /dev/ttyUSB0 115200           (quit: Ctrl-A then k)
     picocom -b 115200 /dev/ttyUSB0       (quit: Ctrl-A then Ctrl-X)

   (/dev/ttyUSB0 or /dev/ttyACM0 depending on the adapter; your user needs
   to be in the dialout group.)

5. What you should see

   The red power LED lights and the green activity LED flickers while the
   firmware reads the card; a monitor on HDMI shows the rainbow splash.
   Then, on the serial console:

     s2hyp: stage-2 MMU hypervisor, ...   the banner
     ... board: ...                       the board the hypervisor found
     ... RAM  0x...-0x... (N MiB)         RAM from the DTB
     ... kept 0x...-0x... ...             what guests never get (the
                                          hypervisor image, the DTB, the
                                          firmware's reserved memory)
     [vm1] ...                            the demo guest's own lines
     [vm1] TEST demo/... PASS (test N)    and its checks, each followed by
     vm1: test N PASS                     the hypervisor's record of it
     stage-2 counters: ...                the counter table
     all VMs stopped ...                  the end

   A Pi has no PSCI SYSTEM_OFF, so the hypervisor does not power off: it
   halts after the counters. Remove power to stop it.

   With uart_2ndstage=1 in config.txt the firmware's own log comes first.
   Nothing at all, or output that stops: see "Debugging" in
   docs/RASPBERRY-PI.md.
EOF
}

# --- write ---------------------------------------------------------------------

if [[ -e $outdir && ! -d $outdir ]]; then
    err "$outdir exists and is not a directory"
    exit 1
fi
mkdir -p "$outdir"

cp -f "$image" "$outdir/$kernel.tmp"
mv -f "$outdir/$kernel.tmp" "$outdir/$kernel"
"config_$board" >"$outdir/config.txt.tmp"
mv -f "$outdir/config.txt.tmp" "$outdir/config.txt"
# The firmware prepends its own options to cmdline.txt; the hypervisor
# reads only what follows "--" (defaults when nothing does).
echo "--" >"$outdir/cmdline.txt.tmp"
mv -f "$outdir/cmdline.txt.tmp" "$outdir/cmdline.txt"
readme >"$outdir/README.txt.tmp"
mv -f "$outdir/README.txt.tmp" "$outdir/README.txt"

if [[ -e $outdir/$other_kernel ]]; then
    log "note: $outdir also holds $other_kernel (another board's image?);"
    log "      config.txt names $kernel, so the firmware does not load it"
fi

log "wrote $outdir for --board $board:"
for f in "$kernel" config.txt cmdline.txt README.txt; do
    printf 'rpi-image: %10d  %s\n' "$(size_of "$outdir/$f")" "$outdir/$f"
done
log "next: add the firmware files listed in $outdir/README.txt and copy the folder to the SD card's FAT partition"
