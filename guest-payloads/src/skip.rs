//! What a test does when a live part it needs is missing (QEMU, the refhyp image, the agent,
//! the default kernel: everything `ci/setup.sh` provides): say *skipped* and why, or, with
//! `TRAPDIFF_REQUIRE_LIVE=1` (ci/test.sh sets it, since it installs every live part first),
//! fail. What CI cannot have (an arm64 host for native KVM) is a plain skip, never required.

/// The switch that turns a missing live part into a failure.
pub const REQUIRE_LIVE: &str = "TRAPDIFF_REQUIRE_LIVE";

/// Whether `TRAPDIFF_REQUIRE_LIVE=1` is set.
pub fn live_required() -> bool {
    std::env::var(REQUIRE_LIVE).is_ok_and(|v| v == "1")
}

/// Report a test skipped because a live part is missing; panics when live parts are required.
/// The caller returns right after.
pub fn live(why: &str) {
    assert!(!live_required(), "{why}, and {REQUIRE_LIVE}=1 requires every live part (bash ci/setup.sh)");
    eprintln!("skipped: {why}");
}
