# Checks of command-line option values shared by the scripts. Each calls
# the sourcing script's usage_error (which prints the message and the usage
# and exits 2) when the value is invalid.

# check_arch VALUE: aarch64 or arm.
check_arch() {
    [[ $1 == aarch64 || $1 == arm ]] || usage_error "invalid --arch '$1' (expected aarch64 or arm)"
}

# check_count OPTION VALUE: a number >= 1.
check_count() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "invalid $1 '$2' (expected a number >= 1)"
}

# check_size OPTION VALUE: a size such as 512M or 1G.
check_size() {
    [[ $2 =~ ^[1-9][0-9]*[KMG]?$ ]] || usage_error "invalid $1 '$2' (expected a size such as 512M or 1G)"
}
