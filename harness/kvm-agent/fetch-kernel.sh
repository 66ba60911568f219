#!/usr/bin/env bash
# Download a Debian arm64 kernel package and unpack it the way ci/setup.sh unpacks the default
# kernel: build/kernel/<package>/{Image,config,release}. For trying `--kernel PATH` with a second
# kernel, e.g. the bookworm-backports one:
#   harness/kvm-agent/fetch-kernel.sh linux-image-6.12.117+deb12-arm64
#   trapdiff run --backends kvm --kernel build/kernel/linux-image-6.12.117+deb12-arm64/Image ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pkg="${1:?usage: fetch-kernel.sh linux-image-<version>-arm64}"
dir="$ROOT/build/kernel/$pkg"
if [ -f "$dir/Image" ] && [ -f "$dir/release" ]; then echo "$dir/Image"; exit 0; fi
rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
(cd "$dir.tmp" && apt-get download -qq "$pkg:arm64")
deb=$(ls "$dir.tmp"/*.deb)
dpkg -x "$deb" "$dir.tmp/root"
vmlinuz=$(ls "$dir.tmp"/root/boot/vmlinuz-* | head -1)
if gzip -t "$vmlinuz" 2>/dev/null; then gzip -dc "$vmlinuz" > "$dir.tmp/Image"; else cp "$vmlinuz" "$dir.tmp/Image"; fi
cp "$dir.tmp"/root/boot/config-* "$dir.tmp/config"
basename "$vmlinuz" | sed 's/^vmlinuz-//' > "$dir.tmp/release"
rm -rf "$dir.tmp/root" "$deb"
rm -rf "$dir" && mv "$dir.tmp" "$dir"
echo "$dir/Image"
