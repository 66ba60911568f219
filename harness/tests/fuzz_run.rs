//! A short real fuzzing campaign on the model backend: the corpus grows from the seeds, the
//! grown corpus is written as loadable case files, stats.json holds the figures, and the
//! same seed and execution budget replay the same campaign.

use std::path::Path;
use std::time::Duration;

use trapdiff::backend::select::{self, BackendOptions};
use trapdiff::backend::Backend;
use trapdiff::fuzz::{self, input::builtin_seeds, Config};

fn model(names: &[&str]) -> Vec<Box<dyn Backend>> {
    let opts = BackendOptions { names: names.iter().map(|s| s.to_string()).collect(), ..BackendOptions::default() };
    select::specs(&opts).expect("the model backend exists").into_iter().map(|s| (s.make)().expect("the model starts")).collect()
}

fn cfg(dir: &Path, seed: u64, iters: u64) -> Config {
    Config {
        seed,
        time: Duration::from_secs(300),
        iters: Some(iters),
        out: Some(dir.to_path_buf()),
        found: Some(dir.join("found")),
        minimise_budget: 50,
        progress: false,
        known: trapdiff::known::KnownList::default(),
    }
}

#[test]
fn a_short_model_campaign_grows_the_corpus() {
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seeds = builtin_seeds();
    let st = fuzz::campaign(&cfg(&dir, 11, 400), model(&["model"]), seeds.clone()).expect("campaign runs");
    eprintln!("{}", st.line());
    assert_eq!(st.initial_corpus, seeds.len());
    assert!(st.execs >= 400, "{} execs", st.execs);
    assert!(st.corpus >= st.initial_corpus + 5, "the corpus did not grow: {} -> {}", st.initial_corpus, st.corpus);
    assert!(st.features > 10, "{} features", st.features);
    assert_eq!(st.backends.len(), 1);
    assert!(st.backends[0].execs_per_second > 0.0);
    // A single backend cannot diverge from itself; a crash of the model would be a find.
    assert!(st.finds.iter().all(|f| f.kind == fuzz::signature::FindKind::BackendCrash), "{:?}", st.finds);
    // The grown corpus is on disk as case files the loader accepts.
    let queue: Vec<_> = trapdiff::case_file::load_all(&[dir.join("queue")]);
    assert_eq!(queue.len(), st.corpus - st.initial_corpus, "the queue holds what the campaign added");
    for r in &queue {
        assert!(r.is_ok(), "{:?}", r.as_ref().err().map(|e| e.to_string()));
    }
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).expect("stats.json")).expect("json");
    assert_eq!(stats["corpus"].as_u64(), Some(st.corpus as u64));
    assert!(stats["backends"][0]["execs_per_second"].as_f64().unwrap_or(0.0) > 0.0);

    // Determinism: the same seed and budget give the same campaign.
    let dir2 = dir.join("again");
    let st2 = fuzz::campaign(&cfg(&dir2, 11, 400), model(&["model"]), seeds).expect("campaign runs");
    assert_eq!((st2.corpus, st2.features, st2.execs), (st.corpus, st.features, st.execs));
    let a: Vec<String> =
        (st.initial_corpus..st.corpus).map(|i| std::fs::read_to_string(dir.join(format!("queue/11-{i:05}.json"))).unwrap_or_default()).collect();
    let b: Vec<String> =
        (st2.initial_corpus..st2.corpus).map(|i| std::fs::read_to_string(dir2.join(format!("queue/11-{i:05}.json"))).unwrap_or_default()).collect();
    assert_eq!(a, b, "the same seed must grow the same corpus");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `trapdiff fuzz --cores 2`: two clients under LibAFL's Launcher and an LLMP broker, each
/// with its own stats and grown corpus, finishing in time with status 0.
#[test]
fn two_clients_under_the_launcher() {
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-cores-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).expect("temp dir");
    for c in builtin_seeds() {
        let p = seeds.join(format!("{}.json", c.name.replace('/', "-")));
        std::fs::write(p, serde_json::to_string_pretty(&c).expect("json")).expect("write seed");
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_trapdiff"))
        .args(["fuzz", "--cores", "2", "--backends", "model", "--time", "8s", "--seed", "3"])
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--found")
        .arg(dir.join("found"))
        .arg(&seeds)
        .status()
        .expect("trapdiff runs");
    assert!(status.success(), "{status}");
    let clients: Vec<_> =
        std::fs::read_dir(dir.join("out")).expect("out dir").flatten().filter(|e| e.file_name().to_string_lossy().starts_with("client-")).collect();
    assert_eq!(clients.len(), 2, "one output directory per client");
    for c in clients {
        let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.path().join("stats.json")).expect("stats.json")).expect("json");
        assert!(stats["execs"].as_u64().unwrap_or(0) > 100, "{stats}");
        assert!(stats["corpus"].as_u64() > stats["initial_corpus"].as_u64(), "{stats}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
