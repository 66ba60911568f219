#!/usr/bin/env bash
# The test command (README, .ci/run): install/build whatever is missing, then run every test.
# Tests that need something this machine lacks (an arm64 host for native KVM) report skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
bash ci/setup.sh
echo "setup: $(( $(date +%s) - start ))s" >&2
# Every host crate: the shared crate, payloads, model, harness (QEMU-backed integration tests
# included; they report skipped when QEMU or an image is missing).
cargo test --workspace --release --no-fail-fast 2>&1
# The refhyp's policy library (no_std) on the host: its own cargo project, own target dir.
(cd oracles/refhyp && CARGO_TARGET_DIR="$ROOT/build/refhyp-host-target" \
    cargo test --release --lib --target x86_64-unknown-linux-gnu 2>&1)
echo "ci/test.sh: total $(( $(date +%s) - start ))s" >&2
