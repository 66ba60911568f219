#!/usr/bin/env bash
# The test command (README, .ci/run): install/build whatever is missing, then run every test.
# Tests that need something this machine lacks (an arm64 host for native KVM) report skipped;
# a missing live part that setup provides is a failure (TRAPDIFF_REQUIRE_LIVE=1).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
bash ci/setup.sh
echo "setup: $(( $(date +%s) - start ))s" >&2
# Setup installed every live part (QEMU, kernel, refhyp, agent): a test that would skip for
# want of one fails instead (guest-payloads/src/skip.rs). Native KVM (arm64 host) still skips.
export TRAPDIFF_REQUIRE_LIVE="${TRAPDIFF_REQUIRE_LIVE:-1}"
# Format and lints first (rustfmt.toml at the root; [lints] in every Cargo.toml). The refhyp's
# policy library is linted on the host; the agent is built (with its [lints]) by setup.
lint_start=$(date +%s)
cargo fmt --all --check
(cd oracles/refhyp && cargo fmt --check && cargo fmt --check --manifest-path ../../harness/kvm-agent/Cargo.toml)
cargo clippy --workspace --all-targets --release -q -- -D warnings
(cd oracles/refhyp && CARGO_TARGET_DIR="$ROOT/build/refhyp-host-target" \
    cargo clippy --release -q --lib --tests --target x86_64-unknown-linux-gnu -- -D warnings)
echo "lints: $(( $(date +%s) - lint_start ))s" >&2
# Every host crate: the shared crate, payloads, model, harness (QEMU-backed integration tests
# included; they report skipped when QEMU or an image is missing).
cargo test --workspace --release --no-fail-fast 2>&1
# The refhyp's policy library (no_std) on the host: its own cargo project, own target dir.
(cd oracles/refhyp && CARGO_TARGET_DIR="$ROOT/build/refhyp-host-target" \
    cargo test --release --lib --target x86_64-unknown-linux-gnu 2>&1)
echo "ci/test.sh: total $(( $(date +%s) - start ))s" >&2
