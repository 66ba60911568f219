#!/usr/bin/env bash
# The nightly job against a kernel tree, in three steps that CI files call (see README,
# "Nightly CI for your tree"):
#   ci/nightly/nightly.sh kernel            build $KERNEL_TREE (if set) -> reports/nightly/kernel
#   ci/nightly/nightly.sh shard I/N         the suite's shard I of N -> reports/nightly/shard-I
#   ci/nightly/nightly.sh merge [BASELINE]  merge the shards -> reports/nightly/merged, and
#                                           compare with BASELINE (last night's merged report)
# Without KERNEL_TREE the pinned Debian kernel runs; NIGHTLY_ARGS adds `trapdiff run` arguments. Exit status: merge's comparison (1 only
# for new divergences, errors or kernel findings) when a baseline is given, else the run's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/reports/nightly"
TD="${CARGO_TARGET_DIR:-$ROOT/target}/release/trapdiff"
mkdir -p "$OUT"
prepare() {
    bash ci/setup.sh
    cargo build --release -q -p trapdiff
}
kernel_args() {
    if [ -f "$OUT/kernel/Image.path" ]; then echo "--kernel $(cat "$OUT/kernel/Image.path")"; fi
}
case "${1:-}" in
    kernel)
        prepare
        if [ -z "${KERNEL_TREE:-}" ]; then echo "nightly: no KERNEL_TREE: the pinned Debian kernel runs" >&2; exit 0; fi
        bash ci/setup.sh kernel-tools
        mkdir -p "$OUT/kernel"
        "$TD" kernel build "$KERNEL_TREE" --out "$OUT/kernel/build" | tail -1 > "$OUT/kernel/Image.path"
        git -C "$KERNEL_TREE" rev-parse HEAD > "$OUT/kernel/commit" 2>/dev/null || true
        ;;
    shard)
        prepare
        i="${2%%/*}"
        # shellcheck disable=SC2046
        "$TD" run --shard "$2" --jobs "$(nproc)" $(kernel_args) ${NIGHTLY_ARGS:-} --report "$OUT/shard-$i" || true
        ;;
    merge)
        prepare
        status=0
        "$TD" merge "$OUT"/shard-* --report "$OUT/merged" > "$OUT/merged.log" || status=$?
        if [ -n "${2:-}" ] && [ -f "$2/report.json" ]; then
            "$TD" compare "$2" "$OUT/merged" --out "$OUT/merged"
        else
            echo "nightly: no baseline: this night's report becomes the next baseline" >&2
            exit "$status"
        fi
        ;;
    *)
        sed -n '2,10p' "$0" >&2
        exit 2
        ;;
esac
