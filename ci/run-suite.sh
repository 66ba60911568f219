#!/usr/bin/env bash
# The main job (README): install/build whatever is missing, then run the default
# differential suite on all backends (model, refhyp, KVM in the pinned Debian kernel).
# Extra arguments go to `trapdiff run` (e.g. --filter mmio, --jobs 2, --kernel PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash ci/setup.sh
cargo build --release -q -p trapdiff
exec target/release/trapdiff run "$@"
