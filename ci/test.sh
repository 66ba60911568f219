#!/usr/bin/env bash
# The test command (README, .ci/run): install/build whatever is missing, then run every test.
# Tests that need something this machine lacks (an arm64 host for native KVM) report skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
bash ci/setup.sh
echo "setup: $(( $(date +%s) - start ))s" >&2
# The shared crate's and the refhyp's no_std logic, on the host.
cargo test --workspace --release --no-fail-fast 2>&1
if [ -f oracles/refhyp/ci-host-test.sh ]; then bash oracles/refhyp/ci-host-test.sh; fi
echo "ci/test.sh: total $(( $(date +%s) - start ))s" >&2
