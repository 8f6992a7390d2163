#!/usr/bin/env bash
# Install what this project needs to build and test:
#
#   * QEMU >= 9 (qemu-system-aarch64 and qemu-system-arm; 9 is the first
#     release with `-M raspi4b`). On Debian and Ubuntu both binaries come from
#     the package `qemu-system-arm`. Debian 12 "bookworm" ships QEMU 7.2, so
#     there the script enables the distribution's `bookworm-backports` suite,
#     derived from the machine's own APT configuration (same mirror, same
#     keyring), and installs QEMU from it.
#   * The Rust toolchain pinned in rust-toolchain.toml (channel, bare-metal
#     targets, the Linux user-space targets of tests/memstress, clippy and
#     rustfmt), installed through rustup.
#   * Debian's cross compiler for 32-bit ARM Linux (gcc-arm-linux-gnueabihf
#     and libc6-dev-armhf-cross): it links tests/memstress statically for
#     the ARM32 Linux guests (scripts/linux.sh --memstress; Rust ships no
#     32-bit ARM musl target to link it by itself, as it does for AArch64).
#
# Idempotent: when everything is already there it makes no APT calls and no
# network access and finishes in well under a second. Needs root only when it
# has something to install with APT; otherwise it prints what to run as root.
# Non-interactive (works with CI=true and no stdin).
#
# Exit status: 0 when QEMU >= 9, the Rust toolchain and the ARM cross linker
# are ready, 1 otherwise.
set -euo pipefail

readonly QEMU_MIN_MAJOR=9
readonly QEMU_PKG=qemu-system-arm
readonly QEMU_BINS=(qemu-system-aarch64 qemu-system-arm)

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly SELF="$REPO_ROOT/scripts/setup.sh"

export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup: %s\n' "$*"; }
err() { printf 'setup: error: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# QEMU
# ---------------------------------------------------------------------------

# Print the major version of QEMU binary $1 ("QEMU emulator version 9.2.1
# (Debian ...)" -> 9); fail if the binary is missing or prints no version.
qemu_major() {
    local out
    out=$("$1" --version 2>/dev/null) || return 1
    [[ $out =~ version\ ([0-9]+)\. ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}"
}

# Succeed when every QEMU binary we need is present and new enough.
qemu_ok() {
    local bin major
    for bin in "${QEMU_BINS[@]}"; do
        major=$(qemu_major "$bin") || return 1
        ((major >= QEMU_MIN_MAJOR)) || return 1
    done
}

# One line describing the installed QEMU binaries, for messages.
qemu_state() {
    local bin major out=""
    for bin in "${QEMU_BINS[@]}"; do
        if major=$(qemu_major "$bin"); then
            out+="${out:+, }$bin is version $major.x"
        else
            out+="${out:+, }$bin is not installed"
        fi
    done
    printf '%s\n' "$out"
}

# First line of a command's output. (Not `| head -n1`: with pipefail, head
# exiting early can make the pipeline fail through SIGPIPE.)
first_line() {
    local out
    out=$("$@")
    printf '%s\n' "${out%%$'\n'*}"
}

# Read /etc/os-release into OS_ID, OS_ID_LIKE, OS_CODENAME, OS_VERSION.
OS_ID="" OS_ID_LIKE="" OS_CODENAME="" OS_VERSION=""
read_os_release() {
    [[ -r /etc/os-release ]] || return 0
    # Sourced in a subshell so its variables do not leak into ours.
    # shellcheck disable=SC1091
    eval "$(
        . /etc/os-release
        printf 'OS_ID=%q OS_ID_LIKE=%q OS_CODENAME=%q OS_VERSION=%q\n' \
            "${ID:-}" "${ID_LIKE:-}" "${VERSION_CODENAME:-}" "${VERSION_ID:-}"
    )"
}

is_debian_like() {
    [[ " $OS_ID $OS_ID_LIKE " == *" debian "* || " $OS_ID $OS_ID_LIKE " == *" ubuntu "* ]]
}

apt_get() {
    # Wait for a concurrently running apt/dpkg instead of failing at once.
    apt-get -o DPkg::Lock::Timeout=300 "$@"
}

# Print the candidate version of $QEMU_PKG ("1:9.2.1+ds-1~bpo12+1"), or
# "(none)". Extra arguments (e.g. -t SUITE) go to apt-cache.
qemu_candidate() {
    local v
    v=$(apt-cache "$@" policy "$QEMU_PKG" 2>/dev/null |
        sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p')
    printf '%s\n' "${v:-(none)}"
}

# Major upstream version of a Debian version string ("1:9.2.1+ds-1" -> 9);
# 0 when there is none.
deb_major() {
    local v=${1#*:} # drop the epoch
    v=${v%%[!0-9]*}
    printf '%s\n' "${v:-0}"
}

# Succeed when APT already knows the suite $1 (after `apt-get update`), i.e.
# some configured source serves it, whoever configured it.
suite_configured() {
    local policy
    policy=$(apt-cache policy 2>/dev/null) || return 1
    grep -Eq "[ ,]n=$1(,|\$)" <<<"$policy"
}

# Print a deb822 stanza for suite "$1-backports", built from the first
# enabled `deb` source that serves suite $1 itself: same URIs, components and
# Signed-By (copied verbatim, so an inline key block also works). Looks at
# deb822 *.sources files first, then one-line sources.list entries. Prints
# nothing when no such source exists.
backports_stanza() {
    local codename=$1 f files=()
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    if ((${#files[@]})); then
        awk -v want="$codename" '
            function has_word(list, w,    n, a, i) {
                n = split(list, a, /[ \t]+/)
                for (i = 1; i <= n; i++) if (a[i] == w) return 1
                return 0
            }
            function reset() { types = uris = suites = comps = enabled = signed = ""; field = "" }
            function flush() {
                if (!done && has_word(types, "deb") && has_word(suites, want) &&
                    tolower(enabled) != "no" && uris != "") {
                    print "Types: deb"
                    print "URIs: " uris
                    print "Suites: " want "-backports"
                    print "Components: " (comps != "" ? comps : "main")
                    if (signed != "") print "Signed-By:" signed
                    done = 1
                }
                reset()
            }
            BEGIN { reset() }
            FNR == 1 { flush() }                 # new file, new stanza
            /^[ \t]*#/ { next }                  # comments may appear anywhere
            /^[ \t]*$/ { flush(); next }         # blank line ends a stanza
            /^[ \t]/ {                           # continuation of previous field
                if (field == "signed-by") { signed = signed "\n" $0; next }
                value = $0; sub(/^[ \t]+/, "", value)
                if (field == "types") types = types " " value
                else if (field == "uris") uris = uris " " value
                else if (field == "suites") suites = suites " " value
                else if (field == "components") comps = comps " " value
                next
            }
            {
                i = index($0, ":")
                if (i == 0) { field = ""; next }
                field = tolower(substr($0, 1, i - 1))
                value = substr($0, i + 1)
                if (field == "signed-by") { signed = value; next }  # keep as is
                sub(/^[ \t]+/, "", value); sub(/[ \t]+$/, "", value)
                if (field == "types") types = value
                else if (field == "uris") uris = value
                else if (field == "suites") suites = value
                else if (field == "components") comps = value
                else if (field == "enabled") enabled = value
            }
            END { flush() }
        ' "${files[@]}" | sed 's/[[:space:]]*$//' | grep . && return 0
    fi

    # One-line format: deb [opt=val ...] URI SUITE COMPONENT...
    files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] && files+=("$f")
    done
    ((${#files[@]})) || return 0
    awk -v want="$codename" '
        done { next }
        {
            sub(/#.*/, "")
            if ($1 != "deb") next
            signed = ""; i = 2
            if ($2 ~ /^\[/) {                    # options: [ a=b c=d ] or [a=b]
                for (; i <= NF; i++) {
                    opt = $i; gsub(/[][]/, "", opt)
                    if (opt ~ /^signed-by=/) signed = substr(opt, 11)
                    if ($i ~ /\]$/) { i++; break }
                }
            }
            uri = $i; suite = $(i + 1); comps = ""
            for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
            if (suite != want || uri == "") next
            print "Types: deb"
            print "URIs: " uri
            print "Suites: " want "-backports"
            print "Components: " (comps != "" ? comps : "main")
            if (signed != "") print "Signed-By: " signed
            done = 1
        }
    ' "${files[@]}"
}

# Make "$1-backports" available to APT (writing a sources file derived from
# the existing configuration unless some source already serves it).
enable_backports() {
    local codename=$1 suite="$1-backports" stanza
    local file="/etc/apt/sources.list.d/$OS_ID-backports.sources"
    if suite_configured "$suite"; then
        log "$suite is already configured"
        return 0
    fi
    stanza=$(backports_stanza "$codename")
    if [[ -z $stanza ]]; then
        err "found no APT source for suite '$codename' to derive '$suite' from;"
        err "add $suite to your APT sources, then run as root:"
        err "  apt-get update && apt-get install -y --no-install-recommends -t $suite $QEMU_PKG"
        return 1
    fi
    log "enabling $suite in $file:"
    printf '%s\n' "$stanza" | sed 's/^/    /'
    {
        printf '# Written by %s: %s, derived from the\n' "scripts/setup.sh" "$suite"
        printf '# existing entry for %s (QEMU >= %s for this project).\n' "$codename" "$QEMU_MIN_MAJOR"
        printf '%s\n' "$stanza"
    } >"$file"
    apt_get update
}

# Tell a user who cannot (or may not) install with APT what to install.
print_manual_qemu() {
    err "QEMU >= $QEMU_MIN_MAJOR is required ($(qemu_state))."
    err "It must provide: ${QEMU_BINS[*]}."
    if is_debian_like; then
        err "As root, run:  $SELF"
        if [[ $OS_ID == debian && $OS_CODENAME == bookworm ]]; then
            err "or by hand: add the bookworm-backports suite to your APT sources, then"
            err "  apt-get update && apt-get install -y --no-install-recommends -t bookworm-backports $QEMU_PKG"
        else
            err "or by hand:  apt-get update && apt-get install -y --no-install-recommends $QEMU_PKG"
        fi
    else
        err "Install your distribution's packages for those binaries, e.g."
        err "  Fedora: qemu-system-aarch64 qemu-system-arm; Arch: qemu-system-aarch64 qemu-system-arm;"
        err "  macOS (Homebrew): qemu"
    fi
}

install_qemu_apt() {
    local cand major suite
    apt_get update
    cand=$(qemu_candidate)
    major=$(deb_major "$cand")
    if ((major >= QEMU_MIN_MAJOR)); then
        log "installing $QEMU_PKG $cand from the distribution"
        apt_get install -y --no-install-recommends "$QEMU_PKG"
        return
    fi

    # Too old. Debian stable releases get newer QEMU through backports.
    if [[ $OS_ID == debian && -n $OS_CODENAME ]]; then
        suite="$OS_CODENAME-backports"
        log "$OS_CODENAME's $QEMU_PKG is $cand (< $QEMU_MIN_MAJOR); trying $suite"
        enable_backports "$OS_CODENAME" || return 1
        cand=$(qemu_candidate -t "$suite")
        major=$(deb_major "$cand")
        if ((major >= QEMU_MIN_MAJOR)); then
            log "installing $QEMU_PKG $cand from $suite"
            apt_get install -y --no-install-recommends -t "$suite" "$QEMU_PKG"
            return
        fi
        err "$suite offers $QEMU_PKG $cand, still older than $QEMU_MIN_MAJOR."
    else
        err "${OS_ID:-this distribution} ${OS_VERSION} offers $QEMU_PKG $cand, older than $QEMU_MIN_MAJOR."
    fi
    err "Install QEMU >= $QEMU_MIN_MAJOR (${QEMU_BINS[*]}) another way, e.g. a newer"
    err "distribution release (Debian 13+, Ubuntu 24.10+) or a build from source."
    return 1
}

ensure_qemu() {
    if qemu_ok; then
        log "QEMU ok: $(first_line qemu-system-aarch64 --version)"
        return 0
    fi
    read_os_release
    if ((EUID != 0)) || ! command -v apt-get >/dev/null || ! is_debian_like; then
        print_manual_qemu
        return 1
    fi
    log "QEMU >= $QEMU_MIN_MAJOR needed ($(qemu_state)); installing $QEMU_PKG"
    install_qemu_apt || return 1
    if ! qemu_ok; then
        err "installed $QEMU_PKG but QEMU is still not usable ($(qemu_state))"
        return 1
    fi
    log "QEMU ok: $(first_line qemu-system-aarch64 --version)"
}

# ---------------------------------------------------------------------------
# Rust
# ---------------------------------------------------------------------------

# Value of `key = "..."` or the words of `key = [...]` in rust-toolchain.toml
# (single-line values only, which is how the file is written).
toolchain_field() {
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$REPO_ROOT/rust-toolchain.toml" |
        tr -d '[]",'
}

ensure_rust() {
    if ! command -v rustup >/dev/null; then
        if command -v cargo >/dev/null; then
            err "found $(cargo --version), but not rustup, which rust-toolchain.toml needs"
        else
            err "Rust is not installed (no cargo, no rustup)."
        fi
        err "Install rustup as the user who builds (see https://rustup.rs), e.g.:"
        err "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"
        err "then open a new shell (or: . \"\$HOME/.cargo/env\") and re-run $SELF;"
        err "the toolchain pinned in rust-toolchain.toml is installed automatically."
        return 1
    fi

    local channel targets components t c missing=0 have_t have_c
    channel=$(toolchain_field channel)
    targets=$(toolchain_field targets)
    components=$(toolchain_field components)

    # Fast, offline check: these fail when the pinned toolchain is missing.
    cd "$REPO_ROOT"
    have_t=$(rustup target list --installed 2>/dev/null) || missing=1
    have_c=$(rustup component list --installed 2>/dev/null) || missing=1
    for t in $targets; do
        grep -qx "$t" <<<"$have_t" || missing=1
    done
    for c in $components; do
        grep -Eq "^$c(-|\$)" <<<"$have_c" || missing=1
    done

    if ((missing)); then
        log "installing Rust toolchain $channel (targets: $targets; components: $components)"
        local args=()
        for t in $targets; do args+=(--target "$t"); done
        for c in $components; do args+=(--component "$c"); done
        rustup toolchain install "$channel" --profile minimal "${args[@]}"
    fi
    # Also confirms the rust-toolchain.toml override is what cargo picks up.
    log "Rust ok: $(first_line rustup show active-toolchain); $(cargo --version)"
}

# ---------------------------------------------------------------------------
# The ARM Linux cross linker (tests/memstress for the ARM32 guests)
# ---------------------------------------------------------------------------

readonly CROSS_GCC=arm-linux-gnueabihf-gcc
readonly CROSS_PKGS=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)

# Succeed when the cross compiler is there with a static C library.
cross_ok() {
    command -v "$CROSS_GCC" >/dev/null &&
        [[ -f $("$CROSS_GCC" -print-file-name=libc.a 2>/dev/null) ]]
}

ensure_cross() {
    if cross_ok; then
        log "ARM cross linker ok: $(first_line "$CROSS_GCC" --version)"
        return 0
    fi
    read_os_release
    if ((EUID != 0)) || ! command -v apt-get >/dev/null || ! is_debian_like; then
        err "$CROSS_GCC with a static glibc is required (tests/memstress for ARM32 guests)."
        if is_debian_like; then
            err "As root, run:  $SELF"
            err "or by hand:  apt-get update && apt-get install -y --no-install-recommends ${CROSS_PKGS[*]}"
        else
            err "Install your distribution's cross compiler for arm-linux-gnueabihf with its glibc."
        fi
        return 1
    fi
    log "installing ${CROSS_PKGS[*]}"
    apt_get update
    apt_get install -y --no-install-recommends "${CROSS_PKGS[@]}" || return 1
    if ! cross_ok; then
        err "installed ${CROSS_PKGS[*]} but $CROSS_GCC has no libc.a"
        return 1
    fi
    log "ARM cross linker ok: $(first_line "$CROSS_GCC" --version)"
}

# ---------------------------------------------------------------------------

status=0
ensure_qemu || status=1
ensure_rust || status=1
ensure_cross || status=1
if ((status)); then
    err "setup incomplete (see above)"
fi
exit "$status"
