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
    assert_eq!(st.imported, 0, "a campaign on its own imports nothing");
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

/// `trapdiff fuzz --cores 2`: two client processes attached to this host's LLMP broker, each
/// with its own stats and grown corpus, finishing in time with status 0.
#[test]
fn two_clients_on_one_host() {
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

/// Seed directory holding the built-in seed of one instruction set.
fn one_seed(dir: &Path, isa: &str) -> std::path::PathBuf {
    let d = dir.join(format!("seeds-{isa}"));
    std::fs::create_dir_all(&d).expect("temp dir");
    let c = builtin_seeds().into_iter().find(|c| c.name.ends_with(isa)).expect("a built-in seed per instruction set");
    std::fs::write(d.join(format!("{isa}.json")), serde_json::to_string_pretty(&c).expect("json")).expect("write seed");
    d
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("json")
}

/// Two hosts' worth of `trapdiff fuzz` on this machine: a hub (`--broker 127.0.0.1:PORT`,
/// with one client of its own) and a node that joins it over TCP (`--connect`, one client),
/// the path a client on another host takes. The two start from different seeds (an A64 case,
/// a T32 case), so what one adds is new to the other: each must receive cases from the other
/// and keep some (`imported`; a lone campaign imports nothing, see above).
#[test]
fn a_hub_and_a_remote_node_share_their_corpora_over_tcp() {
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-b2b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let addr = format!("127.0.0.1:{port}");
    let fuzz = |role: &str, time: &str, seed: &str, name: &str, seeds: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trapdiff"))
            .args(["fuzz", role, &addr, "--cores", "1", "--backends", "model", "--time", time, "--seed", seed])
            .arg("--out")
            .arg(dir.join(name))
            .arg("--found")
            .arg(dir.join(name).join("found"))
            .arg(seeds)
            .spawn()
            .expect("trapdiff runs")
    };
    let mut hub = fuzz("--broker", "14s", "3", "hub", one_seed(&dir, "a64"));
    // The node waits for the hub if it comes first; start it second all the same.
    std::thread::sleep(Duration::from_millis(500));
    let mut remote = fuzz("--connect", "12s", "5", "remote", one_seed(&dir, "t32"));
    let (r, h) = (remote.wait().expect("remote node"), hub.wait().expect("hub"));
    assert!(r.success() && h.success(), "remote {r}, hub {h}");
    let (hs, rs) = (stats(&dir.join("hub/client-1/stats.json")), stats(&dir.join("remote/client-1/stats.json")));
    eprintln!("hub: corpus {} imported {}; remote: corpus {} imported {}", hs["corpus"], hs["imported"], rs["corpus"], rs["imported"]);
    assert!(rs["imported"].as_u64().unwrap_or(0) > 0, "nothing reached the remote node from the hub's client: {rs}");
    assert!(hs["imported"].as_u64().unwrap_or(0) > 0, "nothing reached the hub's client from the remote node: {hs}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A live backend's timing without QEMU: sleeps as long as the refhyp or kvm is expected to
/// take per case once they are fast (the fuzzer's side of the ">= 100 execs/s" goal), and
/// answers as the model does.
struct Paced {
    name: String,
    per_case: Duration,
    inner: Box<dyn Backend>,
}

impl Backend for Paced {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&mut self, case: &trapdiff_arch::Case) -> trapdiff_arch::Outcome {
        let t = std::time::Instant::now();
        let o = self.inner.run(case);
        std::thread::sleep(self.per_case.saturating_sub(t.elapsed()));
        o
    }
    fn phases(&self) -> Option<trapdiff::backend::Phases> {
        Some(trapdiff::backend::Phases::default())
    }
}

/// What the loop itself sustains on the mmio family with the model and two live-paced
/// backends (`TRAPDIFF_PACE_MS`, default 1.3 and 4 ms: the refhyp's and kvm's own time per case
/// the backend work aims at). Timing, so not in CI:
/// `cargo test --release -p trapdiff --test fuzz_run -- --ignored --nocapture`.
#[test]
#[ignore = "a timing figure; run with --ignored"]
fn loop_rate_with_fast_live_backends() {
    let pace: Vec<f64> = std::env::var("TRAPDIFF_PACE_MS").unwrap_or_else(|_| "1.3,4".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let mut backends = model(&["model"]);
    for (i, ms) in pace.iter().enumerate() {
        let inner = model(&["model"]).remove(0);
        backends.push(Box::new(Paced { name: format!("paced{i}"), per_case: Duration::from_secs_f64(ms / 1000.0), inner }));
    }
    let seeds: Vec<_> =
        trapdiff::case_file::load_all(&[trapdiff::paths::suite_dir().join("mmio")]).into_iter().filter_map(Result::ok).map(|(_, c)| c).collect();
    let dir = std::env::temp_dir().join(format!("trapdiff-fuzz-pace-{}", std::process::id()));
    let mut c = cfg(&dir, 1, u64::MAX);
    c.time = Duration::from_secs(30);
    c.iters = None;
    let st = fuzz::campaign(&c, backends, seeds).expect("campaign runs");
    eprintln!("{}", st.line());
    let slowest = st.backends.iter().map(|b| b.stats.busy.as_secs_f64()).fold(0.0, f64::max);
    eprintln!(
        "{:.0} execs/s; per exec {:.2} ms, of which the slowest backend {:.2} ms",
        st.execs_per_second,
        1000.0 * st.elapsed_seconds / st.execs as f64,
        1000.0 * slowest / st.execs as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(st.execs > 0);
}
