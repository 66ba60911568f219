//! `--cores N`: N fuzzing clients under LibAFL's Launcher, connected through an LLMP broker
//! (the clients share what they add to their corpora; the broker's monitor prints their
//! combined figures). Each client has its own backend instances (its own QEMU processes),
//! its own seed (`seed + 1000 * id`) and `--out DIR/client-<id>`; finds go to the shared
//! found directory, deduplicated by signature through the file name.
//!
//! LibAFL is built without its `fork` feature, so the Launcher starts clients by running
//! this same command line again (it tells them apart by environment variables), and each
//! client runs under LibAFL's restarting manager, which starts it again if a backend
//! aborts it.

use std::process::ExitCode;
use std::time::SystemTime;

use libafl::events::{ClientDescription, EventConfig, Launcher, LlmpRestartingEventManager, SendExiting};
use libafl::monitors::MultiMonitor;
use libafl::Error;
use libafl_bolts::core_affinity::Cores;
use libafl_bolts::shmem::{ShMemProvider, StdShMem, StdShMemProvider};

use super::campaign::{campaign_with, Config, FuzzState};
use super::cli::{found_dir, load_seeds, make_backends, FuzzArgs};
use super::input::CaseInput;
use super::supervisor::install_panic_hook;

type ClientManager = LlmpRestartingEventManager<(), CaseInput, FuzzState, StdShMem, StdShMemProvider>;

/// A TCP port for the broker: `TRAPDIFF_BROKER_PORT`, else one the kernel hands out now.
fn broker_port() -> u16 {
    if let Some(p) = std::env::var("TRAPDIFF_BROKER_PORT").ok().and_then(|p| p.parse().ok()) {
        return p;
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(1337)
}

pub fn launch(a: &FuzzArgs, seed: u64) -> ExitCode {
    let shmem = match StdShMemProvider::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot set up shared memory for the LLMP broker: {e}");
            return ExitCode::from(2);
        }
    };
    // The Launcher runs this process again for every client: they must agree on the port.
    let port = match std::env::var("TRAPDIFF_BROKER_PORT") {
        Ok(_) => broker_port(),
        Err(_) => {
            let p = broker_port();
            std::env::set_var("TRAPDIFF_BROKER_PORT", p.to_string());
            p
        }
    };
    let cores = Cores::from((0..a.cores).collect::<Vec<usize>>());
    let started = SystemTime::now();
    // The monitor hears of every new testcase; print the combined figures every 5 s.
    let mut last: Option<SystemTime> = None;
    let monitor = MultiMonitor::new(move |s: &str| {
        let due = last.is_none_or(|t| t.elapsed().map(|d| d.as_secs() >= 5).unwrap_or(true));
        if due && s.contains("GLOBAL") {
            last = Some(SystemTime::now());
            let secs = started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            eprintln!("[{secs}s] {}", s.trim());
        }
    });
    let run_client = |state: Option<FuzzState>, mut mgr: ClientManager, client: ClientDescription| -> Result<(), Error> {
        let id = client.id();
        let out = a.out.join(format!("client-{id}"));
        std::fs::create_dir_all(&out).map_err(|e| Error::illegal_state(format!("cannot create {}: {e}", out.display())))?;
        install_panic_hook(&out);
        let backends = make_backends(a).map_err(Error::illegal_state)?;
        let seeds = if state.is_some() { Vec::new() } else { load_seeds(&a.paths) };
        let cfg = Config {
            seed: seed + 1000 * id as u64,
            time: a.time,
            iters: a.iters,
            out: Some(out),
            found: Some(found_dir(a)),
            minimise_budget: a.minimise_budget,
            progress: false,
            known: crate::paths::known_list().map_err(Error::illegal_state)?,
        };
        campaign_with(&cfg, backends, seeds, &mut mgr, state).map_err(|e| Error::illegal_state(e.to_string()))?;
        // Done in time: no restart, and the broker stops once every client has said so.
        mgr.send_exiting()?;
        Ok(())
    };
    let launched = Launcher::builder()
        .shmem_provider(shmem)
        // AlwaysUnique: a client that receives another's new case runs it on its own
        // backends (the outcomes are not sent along), so novelty is judged on real outcomes.
        .configuration(EventConfig::AlwaysUnique)
        .monitor(monitor)
        .run_client(run_client)
        .cores(&cores)
        .broker_port(port)
        .build()
        .launch::<CaseInput, FuzzState>();
    match launched {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::ShuttingDown) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: launcher: {e}");
            ExitCode::from(2)
        }
    }
}
