//! A find on disk: the minimised case with its provenance (`found/<signature>.json`) and the
//! outcomes and divergences beside it (`<signature>.outcomes.jsonl`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use trapdiff_arch::case::Provenance;
use trapdiff_arch::{Case, Outcome};

use super::signature::{self, FindKind};
use super::{io, FuzzError};

/// One saved (or, without `found`, only reported) find.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    pub kind: FindKind,
    pub signature: String,
    pub explanation: String,
    /// Seconds from the start of the campaign to the first hit.
    pub after_seconds: f64,
    pub execs_before: u64,
    pub instructions_before: usize,
    pub instructions_after: usize,
    pub minimise_execs: u64,
    /// The find shows the planted quirk (`refhyp` and [`super::campaign::REFERENCE`] disagree).
    pub planted: bool,
    pub path: Option<PathBuf>,
    /// A file with this signature was already there (not overwritten).
    pub known: bool,
    #[serde(skip)]
    pub case: Option<Case>,
}

/// Today's date (UTC) as YYYY-MM-DD, from the Unix time (Howard Hinnant's days-to-civil).
pub fn utc_date(t: SystemTime) -> String {
    let days = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Write a minimised find: the case (with provenance) and the outcomes that differed.
/// Returns the path and whether a find with this signature was already there.
pub fn save_find(
    dir: &Path,
    seed: u64,
    backends: &[String],
    find: &signature::Find,
    case: &Case,
    outcomes: &[(String, Outcome)],
) -> Result<(PathBuf, bool), FuzzError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("{}.json", find.signature));
    if path.exists() {
        return Ok((path, true));
    }
    let kernel = outcomes.iter().find_map(|(_, o)| o.meta.kernel.clone()).unwrap_or_else(|| "none".into());
    let explanation = find.divergences.first().map(|d| d.explanation.clone()).unwrap_or_else(|| find.key.clone());
    let mut c = case.clone();
    c.name = format!("found/{}", find.signature);
    c.description = if find.kind == FindKind::BackendCrash && !case.description.is_empty() {
        case.description.clone()
    } else {
        format!("Found by trapdiff fuzz: {explanation}")
    };
    c.expect = None;
    c.provenance = Provenance {
        source: "fuzzer".into(),
        detail: format!(
            "date {}; seed {seed}; backends {}; kernel {kernel}; signature {}; from case {}",
            utc_date(SystemTime::now()),
            backends.join(","),
            find.key,
            case.name
        ),
        commit: None,
        quirk: None,
    };
    let text = serde_json::to_string_pretty(&c).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(io(&path))?;
    let side = dir.join(format!("{}.outcomes.jsonl", find.signature));
    let mut lines = String::new();
    for (b, o) in outcomes {
        lines += &serde_json::json!({"case": c.name, "backend": b, "outcome": o}).to_string();
        lines.push('\n');
    }
    for d in &find.divergences {
        lines += &serde_json::json!({"case": c.name, "divergence": d}).to_string();
        lines.push('\n');
    }
    std::fs::write(&side, lines).map_err(io(&side))?;
    Ok((path, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14");
    }
}
