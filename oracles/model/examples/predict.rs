//! Predict outcomes for case files: `cargo run -p trapdiff-model --example predict -- [--policy NAME] [--json] PATH...`
//! (PATH: a case file or a directory searched recursively). Prints one line per case, or the
//! outcome JSON with `--json`, then a summary of end kinds.

use std::collections::BTreeMap;
use std::path::Path;

use guest_payloads::case_files::json_files_in as json_files;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut policy = "linux-6.1".to_string();
    let mut json = false;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--policy" => policy = args.next().unwrap_or_default(),
            "--json" => json = true,
            _ => files.extend(json_files(Path::new(&a))),
        }
    }
    let Some(profile) = trapdiff_model::profile(&policy) else {
        eprintln!("no policy profile `{policy}`; known: {:?}", trapdiff_model::PROFILES.iter().map(|p| p.name).collect::<Vec<_>>());
        std::process::exit(2);
    };
    let mut model = trapdiff_model::Model::new(profile);
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                continue;
            }
        };
        let case: trapdiff_arch::Case = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                continue;
            }
        };
        let out = model.predict(&case);
        let kind = serde_json::to_value(&out.end).ok().and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(String::from)).unwrap_or_default();
        *ends.entry(kind.clone()).or_default() += 1;
        if json {
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            println!("{}: {} events={} end={}", case.name, kind, out.events.len(), serde_json::to_string(&out.end).unwrap_or_default());
        }
    }
    eprintln!("{} cases: {ends:?}", files.len());
}
