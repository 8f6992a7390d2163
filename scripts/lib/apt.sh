# APT as the scripts that fetch Debian packages (linux.sh, uboot.sh) use it.

# apt_get ARGS...: apt-get, waiting up to 5 minutes for dpkg's lock; as
# root downloading as root, since APT's sandbox user _apt cannot write
# into the caller's directories.
apt_get() {
    local opts=(-o DPkg::Lock::Timeout=300)
    ((EUID == 0)) && opts+=(-o APT::Sandbox::User=root)
    apt-get "${opts[@]}" "$@"
}
