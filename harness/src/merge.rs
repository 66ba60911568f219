//! `trapdiff merge`: one report from the report directories of the shards of one run (the
//! same plan with `--shard 1/N` ... `N/N`, possibly on several machines). The shards' recorded
//! outcomes (`outcomes.jsonl`) are judged again together, with this checkout's waivers and
//! known issues, exactly as an unsharded run judges them; nothing is run.

use std::path::{Path, PathBuf};

use crate::known::KnownList;
use crate::run::{self, BackendSpec, Plan, RunResult};

/// The merged result, and the cases (for the HTML report's disassembly).
#[derive(Debug)]
pub struct Merged {
    pub plan: Plan,
    pub result: RunResult,
    pub cases: Vec<(PathBuf, trapdiff_arch::Case)>,
}

/// Merge shard directories; an error says which shard is missing, doubled or from another run.
pub fn merge(dirs: &[PathBuf], known: &KnownList) -> Result<Merged, String> {
    if dirs.is_empty() {
        return Err("no report directories to merge".into());
    }
    let mut plans = Vec::new();
    let mut records = Vec::new();
    for d in dirs {
        let plan = Plan::load(d)?;
        let stream = d.join("outcomes.jsonl");
        let c = run::read_stream(&stream).map_err(|e| format!("{}: {e}", stream.display()))?;
        if c.bad_lines > 0 {
            eprintln!("trapdiff: {} torn or unreadable line(s) in {} ignored", c.bad_lines, stream.display());
        }
        records.extend(c.records);
        plans.push((d, plan));
    }
    let base = Plan { shard: None, ..plans[0].1.clone() };
    for (d, p) in &plans {
        if (Plan { shard: None, ..p.clone() }) != base {
            return Err(format!("{} is another run: its plan differs from {}'s beyond --shard", d.display(), plans[0].0.display()));
        }
    }
    check_shards(&plans.iter().map(|(d, p)| (d.as_path(), p.shard)).collect::<Vec<_>>())?;
    let mut cases = Vec::new();
    let mut load_errors = Vec::new();
    for r in crate::case_file::load_all(&base.paths) {
        match r {
            Ok(c) => cases.push(c),
            Err(e) => load_errors.push(e.to_string()),
        }
    }
    let cases = run::select(cases, base.filter.as_deref(), None);
    let done = run::outcomes_done(&cases, records);
    // Every pair was recorded by some shard; a missing one becomes that backend's error.
    let specs: Vec<BackendSpec> = base
        .backends
        .iter()
        .map(|b| BackendSpec { name: b.clone(), make: Box::new(|| Err("merge runs nothing: no shard recorded this outcome".to_string())), instances: 1 })
        .collect();
    let result = run::run_resumable(cases.clone(), load_errors, specs, known, None, done);
    Ok(Merged { plan: base, result, cases })
}

/// The shards must be 1..N of one N, each once (an unsharded directory merges alone).
fn check_shards(shards: &[(&Path, Option<(usize, usize)>)]) -> Result<(), String> {
    if shards.len() == 1 && shards[0].1.is_none() {
        return Ok(());
    }
    let mut n = None;
    let mut seen = std::collections::BTreeMap::new();
    for (d, s) in shards {
        let Some((i, k)) = s else { return Err(format!("{} is not a shard (no --shard in its run.json)", d.display())) };
        if n.is_some_and(|n| n != *k) {
            return Err(format!("{} is shard {i}/{k}, the others are of {}", d.display(), n.unwrap_or(0)));
        }
        n = Some(*k);
        if let Some(other) = seen.insert(*i, d.display().to_string()) {
            return Err(format!("shard {i}/{k} given twice: {other} and {}", d.display()));
        }
    }
    let n = n.unwrap_or(0);
    let missing: Vec<String> = (1..=n).filter(|i| !seen.contains_key(i)).map(|i| format!("{i}/{n}")).collect();
    if !missing.is_empty() {
        return Err(format!("shard(s) {} missing", missing.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // fixed test inputs
mod tests {
    use super::*;

    #[test]
    fn shards_must_be_complete_and_unique() {
        let p = Path::new("d");
        assert!(check_shards(&[(p, None)]).is_ok());
        assert!(check_shards(&[(p, Some((1, 2))), (p, Some((2, 2)))]).is_ok());
        assert!(check_shards(&[(p, Some((1, 2)))]).unwrap_err().contains("2/2 missing"));
        assert!(check_shards(&[(p, Some((1, 2))), (p, Some((1, 2)))]).unwrap_err().contains("twice"));
        assert!(check_shards(&[(p, Some((1, 2))), (p, Some((2, 3)))]).is_err());
        assert!(check_shards(&[(p, None), (p, Some((1, 1)))]).is_err());
    }
}
