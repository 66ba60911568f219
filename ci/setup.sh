#!/usr/bin/env bash
# Installs and builds everything trapdiff needs, and is quick when it is all there.
#   ci/setup.sh            packages + default kernel + refhyp + kvm-agent
#   ci/setup.sh packages   system packages only
#   ci/setup.sh kernel-tools    what `trapdiff kernel build` needs (cross gcc, flex, bison, ...)
#   ci/setup.sh kernel-source   Debian's linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz),
#                               the tree the kernel build and bisect tests are made from
# Debian 12 is the proven platform (docs/DESIGN.md "Toolchains"). As root it installs system
# packages with apt; otherwise it prints the exact command and exits 1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/build"
mkdir -p "$CACHE"
log() { printf 'setup: %s\n' "$*" >&2; }

# ---- system packages -------------------------------------------------------------------
PKGS=(rustc-web rust-web-src cargo-web lld gcc-aarch64-linux-gnu libc6-dev-arm64-cross
      libstd-rust-web-dev:arm64 binutils-arm-none-eabi cmake libclang-dev pkg-config cpio gzip zstd ca-certificates)
BACKPORT_PKGS=(qemu-system-arm)

missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"
    done
}

main_mirror() {
    # The backports suite must come from the same mirror as the main suite.
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "$uri"
}

qemu_ok() {
    command -v qemu-system-aarch64 >/dev/null || return 1
    local v
    v=$(qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
    [ "${v:-0}" -ge 8 ]
}

install_packages() {
    local need need_bp codename
    need=$(missing_pkgs "${PKGS[@]}")
    need_bp=""
    qemu_ok || need_bp="${BACKPORT_PKGS[*]}"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then need="$need arch:arm64"; fi
    if [ -z "$need" ] && [ -z "$need_bp" ]; then return 0; fi
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$(id -u)" != 0 ]; then
        log "missing system packages: $need $need_bp"
        log "run as root:"
        echo "  sudo dpkg --add-architecture arm64 && echo 'deb $(main_mirror) ${codename}-backports main' | sudo tee /etc/apt/sources.list.d/trapdiff-backports.list && sudo apt-get update && sudo apt-get install -y ${PKGS[*]} && sudo apt-get install -y -t ${codename}-backports ${BACKPORT_PKGS[*]}"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    dpkg --add-architecture arm64
    if [ -n "$need_bp" ] && [ "$codename" = bookworm ] && \
       ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb $(main_mirror) bookworm-backports main" > /etc/apt/sources.list.d/trapdiff-backports.list
    fi
    log "installing system packages:$need $need_bp"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
    if [ -n "$need_bp" ]; then
        if [ "$codename" = bookworm ]; then
            apt-get install -y -qq --no-install-recommends -t bookworm-backports "${BACKPORT_PKGS[@]}" >/dev/null
        else
            apt-get install -y -qq --no-install-recommends "${BACKPORT_PKGS[@]}" >/dev/null
        fi
    fi
}

# apt_install WHY PKG...: install what is missing (as root), else print the command, exit 1.
apt_install() {
    local why="$1" need
    shift
    need=$(missing_pkgs "$@")
    [ -n "$need" ] || return 0
    if [ "$(id -u)" != 0 ]; then
        log "missing packages for $why:" $need
        log "run as root:"
        echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends" $need
        exit 1
    fi
    log "installing for $why:" $need
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
}

# Cross-building an arm64 kernel (`trapdiff kernel build`): the host gcc builds scripts/, and
# kconfig and the build call flex, bison and bc; libssl/libelf headers are the kernel's other
# documented build needs (certs, objtool), unused by ci/kernel.config but cheap.
KERNEL_TOOL_PKGS=(make gcc libc6-dev gcc-aarch64-linux-gnu flex bison bc libssl-dev libelf-dev git xz-utils)
KERNEL_SOURCE_PKGS=(linux-source-6.1)

# ---- guest kernels: Debian arm64 Image packages ------------------------------------------
# unpack_kernel PKG [VERSION]: download PKG:arm64 into build/kernel/PKG (Image, config,
# release); quick when it is there. Returns 1 when the archive no longer offers it.
unpack_kernel() {
    local pkg="$1" ver="${2:-}" dir="$CACHE/kernel/$1" tmp="$CACHE/kernel/.download"
    if [ -f "$dir/Image" ] && [ -f "$dir/release" ]; then return 0; fi
    log "downloading $pkg:arm64${ver:+ $ver}"
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$tmp" && apt-get download -qq "$pkg:arm64${ver:+=$ver}" 2>/dev/null) || return 1
    local deb vmlinuz
    deb=$(ls "$tmp"/*.deb)
    dpkg -x "$deb" "$tmp/root"
    vmlinuz=$(ls "$tmp"/root/boot/vmlinuz-* | head -1)
    # The Debian arm64 vmlinuz is a gzip-compressed Image; QEMU's -kernel takes either form.
    if gzip -t "$vmlinuz" 2>/dev/null; then gzip -dc "$vmlinuz" > "$tmp/Image"; else cp "$vmlinuz" "$tmp/Image"; fi
    cp "$tmp"/root/boot/config-* "$tmp/config"
    basename "$vmlinuz" | sed 's/^vmlinuz-//' > "$tmp/release"
    dpkg-deb -f "$deb" Version > "$tmp/version"
    rm -rf "$tmp/root" "$deb"
    rm -rf "$dir" && mv "$tmp" "$dir"
    log "kernel $(cat "$dir/release") ready in $dir"
}

newest_kernel() {
    # $1: a release prefix regex ('6\.1\.0-[0-9]+' or '[0-9.]+[^ ]*'); flavours rt/cloud/16k excluded.
    apt-cache search --names-only "^linux-image-$1-arm64\$" | awk '{print $1}' | sort -V | tail -1
}

# The default kernel (Debian arm64 6.1), version pinned in ci/kernel.lock.
install_kernel() {
    local lock="$ROOT/ci/kernel.lock" pkg ver
    if [ -f "$lock" ]; then
        pkg=$(awk -F= '$1=="package" {print $2}' "$lock")
        ver=$(awk -F= '$1=="version" {print $2}' "$lock")
    fi
    if [ -z "${pkg:-}" ]; then
        # First pin: the newest linux-image-6.1.0-N-arm64 the archive offers.
        pkg=$(newest_kernel '6\.1\.0-[0-9]+')
        [ -n "$pkg" ] || { log "no linux-image-6.1.0-*-arm64 package found (apt-get update as root?)"; exit 1; }
    fi
    if ! unpack_kernel "$pkg" "${ver:-}"; then
        # The archive drops superseded kernels; a stale pin must not break setup. Take the
        # newest 6.1 kernel, and say loudly that the pin moved (the new pin is written below).
        [ "$(id -u)" = 0 ] && apt-get update -qq
        local newest
        newest=$(newest_kernel '6\.1\.0-[0-9]+')
        [ -n "$newest" ] || { log "cannot download $pkg${ver:+=$ver} and no other 6.1 arm64 kernel is offered"; exit 1; }
        log "WARNING: pinned kernel $pkg${ver:+ $ver} is no longer offered; moving the pin to $newest (commit ci/kernel.lock)"
        pkg=$newest
        unpack_kernel "$pkg" || { log "cannot download $pkg"; exit 1; }
    fi
    local dir="$CACHE/kernel/$pkg"
    [ -f "$dir/version" ] || dpkg_version_of "$pkg" "$ver" > "$dir/version"
    printf 'package=%s\nversion=%s\nrelease=%s\n' "$pkg" "$(cat "$dir/version")" "$(cat "$dir/release")" > "$lock.tmp"
    cmp -s "$lock.tmp" "$lock" && rm -f "$lock.tmp" || mv "$lock.tmp" "$lock"
    ln -sfn "$pkg" "$CACHE/kernel/default"
}

dpkg_version_of() { if [ -n "$2" ]; then echo "$2"; else apt-cache show "$1:arm64" 2>/dev/null | awk '/^Version:/ {print $2; exit}'; fi; }

# Another Debian kernel for a kernel matrix: `ci/setup.sh kernel-image PKG`, or `newest` for
# the newest arm64 kernel the archive offers (bookworm-backports or later). Prints the Image.
install_kernel_image() {
    local pkg="${1:-newest}"
    if [ "$pkg" = newest ]; then
        pkg=$(newest_kernel '[0-9][0-9.]*[^ ]*[0-9]')
        [ -n "$pkg" ] || { log "no linux-image-*-arm64 package found (apt-get update as root?)"; exit 1; }
    fi
    unpack_kernel "$pkg" || { log "the archive does not offer $pkg:arm64"; exit 1; }
    echo "$CACHE/kernel/$pkg/Image"
}

# ---- cross-built projects ---------------------------------------------------------------
# Debian's rustc 1.96 with its own CARGO_HOME, so the two cargo versions never share a cache.
debian_cargo() {
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_HOME="$CACHE/debian-cargo-home" \
        CARGO_TARGET_DIR="$CACHE/cross-target" /usr/bin/cargo "$@"
}

# The soft-float target keeps the compiler away from the FP/SIMD registers at EL2: they hold
# the guest's FP state, switched lazily (oracles/refhyp/src/fp.rs). Image:
# build/cross-target/aarch64-unknown-none-softfloat/release/refhyp
build_refhyp() {
    [ -f "$ROOT/oracles/refhyp/Cargo.toml" ] || return 0
    (cd "$ROOT/oracles/refhyp" && debian_cargo build --release -q \
        -Zbuild-std=core,compiler_builtins,alloc -Zbuild-std-features=compiler-builtins-mem \
        --target aarch64-unknown-none-softfloat)
}

build_agent() {
    [ -f "$ROOT/harness/kvm-agent/Cargo.toml" ] || return 0
    (cd "$ROOT/harness/kvm-agent" && \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        RUSTFLAGS="-C target-feature=+crt-static" \
        debian_cargo build --release -q --target aarch64-unknown-linux-gnu)
}

what="${1:-all}"
case "$what" in
    kernel-tools) apt_install "kernel builds" "${KERNEL_TOOL_PKGS[@]}"; exit 0 ;;
    kernel-source) apt_install "the kernel source" "${KERNEL_SOURCE_PKGS[@]}"; ls /usr/src/linux-source-6.1.tar.xz; exit 0 ;;
esac
install_packages
case "$what" in
    packages) ;;
    all) install_kernel; build_refhyp; build_agent ;;
    refhyp) build_refhyp ;;
    agent) build_agent ;;
    kernel-image) install_kernel_image "${2:-newest}" ;;
    *) log "unknown step '$what'"; exit 2 ;;
esac
