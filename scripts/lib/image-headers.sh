# Image-header helpers shared by scripts/build.sh and scripts/rpi-image.sh.
# Sourced, not run; the caller defines log MESSAGE and err MESSAGE.
# shellcheck shell=bash

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

# check_arm64_header BIN TEXT_OFFSET: the arm64 Linux image header
# (Documentation/arch/arm64/booting.rst): code0 at 0 (here a branch over the
# header), text_offset at 8 (as expected), image_size at 16, magic "ARM\x64"
# at 56.
check_arm64_header() {
    local bin=$1 code0 magic
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
    if (($(le 8 "$bin" 8) != $2)); then
        err "$bin has text_offset $(printf '%#x' "$(le 8 "$bin" 8)"), expected $(printf '%#x' "$2")"
        exit 1
    fi
    log "arm64 image header ok: text_offset $(printf '%#x' "$(le 8 "$bin" 8)"), image_size $(le 8 "$bin" 16) bytes (with BSS)"
}

# check_zimage_header BIN LOAD: the ARM zImage header the ARM32 hypervisor
# starts with: an A32 branch (B, condition AL) at 0, magic 0x016f2818 at
# 0x24, the load address LOAD (QEMU virt's raw-kernel address 0x40010000,
# the Pi 2 firmware's 0x8000) at 0x28 and the end of the loaded file at
# 0x2c, which must match the file's size.
check_zimage_header() {
    local bin=$1 code0 magic start end size
    size=$(size_of "$bin")
    if ((size < 48)); then
        err "$bin is smaller than the 48-byte zImage header"
        exit 1
    fi
    code0=$(le 4 "$bin" 0)
    if (((code0 >> 24) != 0xea)); then
        err "$bin does not start with an A32 branch (B): first word is $(printf '%#010x' "$code0")"
        exit 1
    fi
    magic=$(le 4 "$bin" 36)
    if ((magic != 0x016f2818)); then
        err "$bin has no zImage magic 0x016f2818 at offset 0x24 (found $(printf '%#010x' "$magic"))"
        exit 1
    fi
    start=$(le 4 "$bin" 40)
    end=$(le 4 "$bin" 44)
    if ((start != $2)); then
        err "$bin is linked at $(printf '%#x' "$start"), not at $(printf '%#x' "$2") where it is loaded"
        exit 1
    fi
    if ((end - start != size)); then
        err "$bin: the zImage header says $((end - start)) bytes, the file has $size"
        exit 1
    fi
    log "zImage header ok: load address $(printf '%#x' "$start"), $size bytes"
}
