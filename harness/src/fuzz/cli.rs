//! `trapdiff fuzz`: its arguments, the backends and seeds they name, and the client that runs
//! one campaign and prints its figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use trapdiff_arch::Case;

use super::campaign::{campaign, Config, REFERENCE};
use super::supervisor::{self, install_panic_hook};
use super::{input, launcher};
use crate::backend::select::{self, BackendOptions};
use crate::backend::Backend;
use crate::{case_file, paths};

/// Command-line arguments of `trapdiff fuzz`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct FuzzArgs {
    /// Initial corpus: case files or directories (default: the curated suite). With no
    /// loadable case the built-in seeds (one per instruction set) are used.
    pub paths: Vec<PathBuf>,
    /// How long to fuzz: `90s`, `10m`, `2h`, or seconds.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub time: Duration,
    /// Stop after this many executions (each on every backend), whichever comes first.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Backends to run every case on, comma-separated: model, refhyp, kvm.
    #[arg(long, default_value = "model,refhyp", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Kernel Image for the kvm backend (default: the pinned Debian kernel).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Run the KVM agent natively on this arm64 host instead of under QEMU.
    #[arg(long)]
    pub native: bool,
    /// Policy profile the model predicts with.
    #[arg(long, default_value = "linux-6.1")]
    pub policy: String,
    /// Where stats.json and the grown corpus (queue/) go.
    #[arg(long, default_value = "reports/fuzz")]
    pub out: PathBuf,
    /// Where minimised finds go (default: corpus/found).
    #[arg(long)]
    pub found: Option<PathBuf>,
    /// Seed of every random choice: the same seed, corpus and --iters replay the same run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fuzzing clients to run side by side on this host, each with its own backend instances,
    /// sharing their corpora through an LLMP broker (with --broker, 0 runs only the hub).
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Be the hub of a campaign across hosts: listen on ADDR (e.g. 0.0.0.0:1337) for the
    /// other hosts' `--connect`, and relay every host's new corpus entries to the others.
    #[arg(long, value_name = "ADDR", conflicts_with = "connect")]
    #[serde(default)]
    pub broker: Option<String>,
    /// Join the campaign whose hub (`--broker`) listens at HOST:PORT: this host's clients
    /// share their corpora with every other host's.
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(default)]
    pub connect: Option<String>,
    /// Executions a minimisation may spend per find.
    #[arg(long, default_value_t = 300)]
    pub minimise_budget: u64,
    /// Plant a historical KVM bug in the refhyp (repeatable): the fuzzer should find it.
    #[arg(long = "quirk", value_name = "NAME", value_parser = select::parse_quirk)]
    #[serde(with = "quirk_names")]
    pub quirks: Vec<trapdiff_arch::quirk::Quirk>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (try 90s, 10m, 2h)"))?;
    let mult = match unit {
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (s, m, h)")),
    };
    Ok(Duration::from_secs_f64(n * mult))
}

/// Quirks by name in the serialised arguments (the supervisor hands a client its arguments).
mod quirk_names {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use trapdiff_arch::quirk::Quirk;

    pub fn serialize<S: Serializer>(q: &[Quirk], s: S) -> Result<S::Ok, S::Error> {
        q.iter().map(|q| q.name()).collect::<Vec<_>>().serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Quirk>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().map(|n| crate::backend::select::parse_quirk(n).map_err(serde::de::Error::custom)).collect()
    }
}

/// Build the named backends (each once: the fuzzer keeps them for the whole campaign).
pub fn make_backends(a: &FuzzArgs) -> Result<Vec<Box<dyn Backend>>, String> {
    let opts = BackendOptions {
        names: a.backends.clone(),
        kernel: a.kernel.clone(),
        native: a.native,
        policy: a.policy.clone(),
        jobs: 1,
        quirks: a.quirks.iter().copied().collect(),
        kernel_append: Vec::new(),
    };
    let mut out = Vec::new();
    for spec in select::specs(&opts)? {
        out.push((spec.make)().map_err(|e| format!("cannot start backend `{}`: {e} (run `trapdiff doctor`)", spec.name))?);
    }
    if !a.quirks.is_empty() && a.backends.iter().any(|b| b.trim() == "refhyp") {
        let mut r = crate::backend::refhyp::backend(&crate::backend::refhyp::RefhypOptions::default()).map_err(|e| e.to_string())?;
        r.set_name(REFERENCE);
        out.push(Box::new(r));
    }
    Ok(out)
}

/// The seed cases under `paths` (default: the curated suite); the built-in seeds if none load.
pub fn load_seeds(paths: &[PathBuf]) -> Vec<Case> {
    let ps = if paths.is_empty() { vec![paths::suite_dir()] } else { paths.to_vec() };
    let mut seeds = Vec::new();
    for r in case_file::load_all(&ps) {
        match r {
            Ok((_, c)) => seeds.push(c),
            Err(e) => eprintln!("warning: skipping seed: {e}"),
        }
    }
    if seeds.is_empty() {
        eprintln!(
            "trapdiff fuzz: no case loaded from {}; starting from the built-in seeds",
            ps.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        seeds = input::builtin_seeds();
    }
    seeds
}

/// `trapdiff fuzz`: the launcher for `--cores N` / `--broker` / `--connect`, else the
/// supervisor, which runs the campaign in a client process (this function again, with the
/// arguments in [`supervisor::CLIENT_ENV`]; an LLMP client also has [`launcher::PORT_ENV`]).
pub fn main(a: FuzzArgs) -> ExitCode {
    if let Some(json) = std::env::var_os(supervisor::CLIENT_ENV) {
        return match serde_json::from_str::<FuzzArgs>(&json.to_string_lossy()) {
            Ok(args) => match launcher::client_env() {
                Some((port, id)) => launcher::client(args, port, id),
                None => client(args),
            },
            Err(e) => {
                eprintln!("error: the fuzzing client's arguments ({}) do not parse: {e}", supervisor::CLIENT_ENV);
                ExitCode::from(2)
            }
        };
    }
    let seed = a.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    if a.cores != 1 || a.broker.is_some() || a.connect.is_some() {
        return launcher::launch(&a, seed);
    }
    supervisor::supervise(&a, seed)
}

/// One campaign in this process, as the supervisor asked for it (`a.seed` is set).
fn client(a: FuzzArgs) -> ExitCode {
    let seed = a.seed.unwrap_or(1);
    let seeds = load_seeds(&a.paths);
    let backends = match make_backends(&a) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        eprintln!("error: cannot create {}: {e}", a.out.display());
        return ExitCode::from(2);
    }
    install_panic_hook(&a.out);
    let known = match crate::paths::known_list() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = Config {
        seed,
        time: a.time,
        iters: a.iters,
        out: Some(a.out.clone()),
        found: Some(found_dir(&a)),
        minimise_budget: a.minimise_budget,
        progress: true,
        known,
    };
    eprintln!("trapdiff fuzz: seed {seed}, {} seed cases, backends {}, for {:?}", seeds.len(), a.backends.join(","), a.time);
    match campaign(&cfg, backends, seeds) {
        Ok(st) => {
            println!("{}", st.line());
            for b in &st.backends {
                println!(
                    "  {}: {} execs, {:.1} execs/s, {} errors, {} timeouts",
                    b.stats.name, b.stats.execs, b.execs_per_second, b.stats.errors, b.stats.timeouts
                );
            }
            for f in &st.finds {
                println!("  find {} after {:.1}s{}: {}", f.signature, f.after_seconds, if f.planted { " (planted quirk)" } else { "" }, f.explanation);
            }
            if !a.quirks.is_empty() {
                match st.finds.iter().filter(|f| f.planted).map(|f| f.after_seconds).reduce(f64::min) {
                    Some(t) => println!("planted quirk first found after {t:.1}s"),
                    None => println!("planted quirk not found"),
                }
            }
            println!("stats in {}", a.out.join("stats.json").display());
            ExitCode::from(u8::from(st.finds.iter().any(|f| !f.known)))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn found_dir(a: &FuzzArgs) -> PathBuf {
    a.found.clone().unwrap_or_else(|| paths::root().join("corpus").join("found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn arguments_survive_the_handoff_to_a_client() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: FuzzArgs,
        }
        let q = trapdiff_arch::quirk::Quirk::NisvEsrUnmasked.name();
        let argv = ["fuzz", "--time", "90s", "--iters", "5", "--backends", "model,refhyp", "--quirk", q, "--minimise-budget", "7", "a.json", "dir"];
        let a = <Cli as clap::Parser>::try_parse_from(argv).expect("parses").a;
        let json = serde_json::to_string(&a).expect("serialises");
        let back: FuzzArgs = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(format!("{a:?}"), format!("{back:?}"));
        assert!(json.contains(q), "{json}");
    }
}
