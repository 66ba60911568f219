//! Fuzzing clients that share their corpora through LibAFL's LLMP, on one host (`--cores N`)
//! or across hosts (`--broker ADDR` on the main host, `--connect HOST:PORT` on the others).
//!
//! LLMP moves messages between processes of one host through shared memory: a client finds
//! its host's broker on a local TCP port, and that port only hands out shared-memory names.
//! Hosts are joined broker to broker (LLMP's "B2B" link, `LlmpBrokerInner::connect_b2b`), which
//! relays every message over TCP. So every host runs a *node*: a broker in this process with
//! `--cores` client processes attached, and, across hosts, a B2B link to the *hub*:
//!
//! ```text
//! main host   trapdiff fuzz --broker 0.0.0.0:1337 --cores 2    hub (listens) + a node linked to it
//! other host  trapdiff fuzz --connect main:1337 --cores 2      a node linked to the hub
//! ```
//!
//! The hub relays what one node's clients add to their corpora to every other node; each
//! receiving client runs the case on its own backends (`EventConfig::AlwaysUnique`: outcomes
//! are not sent along) and keeps it only if it is new to its own feedback (`imported` in its
//! stats.json). Finds are minimised and saved on the host that found them, in its `--found`
//! directory (one `corpus/found` to merge by hand or by `git`); the others hear of them only
//! as the broker's objective count.
//!
//! Why not LibAFL's `Launcher`: in 0.16.1 its `remote_broker_addr` never reaches the broker
//! (`setup_restarting_mgr_llmp` calls `broker_things(broker, None)`), its broker cannot tell
//! its own clients' exit from a B2B peer's (a B2B link stays registered as a client, so
//! `exit_cleanly_after` never fires), and its broker listens on 127.0.0.1 unless LibAFL is
//! built with `llmp_bind_public`. So this module starts the brokers and client processes
//! itself, with LibAFL's broker, event hook, B2B link and restarting client manager.
//!
//! Each client has its own backend instances (its own QEMU processes), its own seed
//! (`seed + 1000 * id`) and `--out DIR/client-<id>`.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use libafl::events::{
    setup_restarting_mgr_llmp, ClientDescription, EventConfig, LlmpRestartingEventManager, ManagerKind, SendExiting, ShouldSaveState, StdLlmpEventHook,
};
use libafl::monitors::MultiMonitor;
use libafl::Error;
use libafl_bolts::core_affinity::CoreId;
use libafl_bolts::llmp::{Listener, LlmpBroker};
use libafl_bolts::shmem::{ShMemProvider, StdShMem, StdShMemProvider};
use libafl_bolts::tuples::tuple_list;

use super::campaign::{campaign_with, Config, FuzzState};
use super::cli::{found_dir, load_seeds, make_backends, FuzzArgs};
use super::input::CaseInput;
use super::supervisor::{install_panic_hook, CLIENT_ENV};

type ClientManager = LlmpRestartingEventManager<(), CaseInput, FuzzState, StdShMem, StdShMemProvider>;

/// Set in a client process: the local TCP port of its node's broker.
pub(crate) const PORT_ENV: &str = "TRAPDIFF_LLMP_PORT";
/// Set in a client process: its id within the node (1, 2, ...).
const ID_ENV: &str = "TRAPDIFF_LLMP_CLIENT";
/// How long a node keeps trying to reach the hub (it may be starting too).
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// The brokers' poll interval (LibAFL's own brokers sleep 5 ms between rounds).
const BROKER_SLEEP: Duration = Duration::from_millis(5);

/// In a process the node started, the port and id it was given (see [`client`]).
pub(crate) fn client_env() -> Option<(u16, usize)> {
    let port = std::env::var(PORT_ENV).ok()?.parse().ok()?;
    let id = std::env::var(ID_ENV).ok()?.parse().ok()?;
    Some((port, id))
}

/// `--cores N`, `--broker ADDR`, `--connect HOST:PORT`: the hub (if asked for) and this host's
/// node, until the clients are done (and, for the hub, `--time` is up).
pub fn launch(a: &FuzzArgs, seed: u64) -> ExitCode {
    match run(a, seed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(a: &FuzzArgs, seed: u64) -> Result<ExitCode, String> {
    let started = Instant::now();
    let mut hub = None;
    let link = match (&a.broker, &a.connect) {
        (Some(_), Some(_)) => return Err("--broker and --connect exclude each other: the hub host takes --broker, the others --connect".into()),
        (Some(addr), None) => {
            let (h, local) = Hub::start(addr)?;
            eprintln!("trapdiff fuzz: hub listening on {} (other hosts: trapdiff fuzz --connect HOST:{})", h.addr, h.addr.port());
            hub = Some(h);
            Some(local)
        }
        (None, Some(addr)) => Some(resolve(addr)?),
        (None, None) => None,
    };
    if a.cores == 0 && hub.is_none() {
        return Err("--cores 0 runs no client; it is for the hub host only (--broker)".into());
    }
    let code = if a.cores > 0 { node(a, seed, link)? } else { ExitCode::SUCCESS };
    if let Some(h) = hub {
        // The hub relays for the other hosts until --time is up, even when no client is local.
        let left = a.time.saturating_sub(started.elapsed());
        if !left.is_zero() {
            eprintln!("trapdiff fuzz: hub relaying for {:.0}s more", left.as_secs_f64());
            thread::sleep(left);
        }
        h.stop();
    }
    Ok(code)
}

/// The first address `addr` (HOST:PORT) resolves to.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs().map_err(|e| format!("`{addr}` is no HOST:PORT address: {e}"))?.next().ok_or_else(|| format!("`{addr}` resolves to no address"))
}

/// The hub: a broker with no client of its own, listening on the `--broker` address for the
/// nodes' B2B links and relaying each node's messages to the others.
struct Hub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Hub {
    /// Start the hub on `addr`; also returns where this host's own node reaches it.
    fn start(addr: &str) -> Result<(Hub, SocketAddr), String> {
        let want = resolve(addr)?;
        let listener = TcpListener::bind(want).map_err(|e| format!("cannot listen on {want} for the other hosts: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        // A wildcard address listens on every interface: this host's node comes in on loopback.
        let local = match bound {
            SocketAddr::V4(v) if v.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], v.port())),
            SocketAddr::V6(v) if v.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v.port())),
            a => a,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        // The broker lives on its own thread (its shared maps are not Send: it is built there).
        let thread = thread::Builder::new()
            .name("llmp-hub".into())
            .spawn(move || {
                let broker = StdShMemProvider::new().and_then(|shmem| {
                    let mut b = LlmpBroker::new(shmem, tuple_list!())?;
                    b.inner_mut().launch_listener(Listener::Tcp(listener))?;
                    Ok(b)
                });
                let mut broker = match broker {
                    Ok(b) => {
                        let _ = ready_tx.send(Ok(()));
                        b
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the hub broker: {e}")));
                        return;
                    }
                };
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = broker.broker_once() {
                        eprintln!("error: hub broker: {e}");
                        return;
                    }
                    thread::sleep(BROKER_SLEEP);
                }
            })
            .map_err(|e| format!("cannot start the hub thread: {e}"))?;
        ready.recv().map_err(|_| "the hub broker thread died while starting".to_string())??;
        Ok((Hub { addr: bound, stop, thread: Some(thread) }, local))
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This host's node: a broker on a local port, linked to the hub at `link` if given, and
/// `--cores` client processes attached to it, until they have all exited.
fn node(a: &FuzzArgs, seed: u64, link: Option<SocketAddr>) -> Result<ExitCode, String> {
    let shmem = StdShMemProvider::new().map_err(|e| format!("cannot set up shared memory for the LLMP broker: {e}"))?;
    let started = SystemTime::now();
    // The broker's monitor hears of every client's figures and new testcase (the other hosts'
    // too); print the combined figures every 5 s.
    let mut last: Option<SystemTime> = None;
    let monitor = MultiMonitor::new(move |s: &str| {
        let due = last.is_none_or(|t| t.elapsed().map(|d| d.as_secs() >= 5).unwrap_or(true));
        if due && s.contains("GLOBAL") {
            last = Some(SystemTime::now());
            let secs = started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            eprintln!("[{secs}s] {}", s.trim());
        }
    });
    let hook = StdLlmpEventHook::<CaseInput, _>::new(monitor).map_err(|e| e.to_string())?;
    let mut broker = LlmpBroker::new(shmem, tuple_list!(hook)).map_err(|e| format!("cannot start the LLMP broker: {e}"))?;
    // The B2B link first: it takes client id 0, and the ids the listener hands the local clients
    // start after the listener's own, so none equals the link's (a client ignores messages
    // from its own id, and every message from the hub arrives under the link's id).
    if let Some(hub) = link {
        let deadline = Instant::now() + CONNECT_PATIENCE;
        loop {
            match broker.inner_mut().connect_b2b(hub) {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    log_once(&format!("trapdiff fuzz: waiting for the hub at {hub} ({e})"));
                    thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(format!("cannot reach the hub at {hub} (is `trapdiff fuzz --broker` running there?): {e}")),
            }
        }
        eprintln!("trapdiff fuzz: linked to the hub at {hub}");
    }
    // Local clients only: this port hands out shared-memory names, meaningless elsewhere.
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("cannot open a local port for the LLMP broker: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    broker.inner_mut().launch_listener(Listener::Tcp(listener)).map_err(|e| format!("cannot start the LLMP listener: {e}"))?;

    let mut children: Vec<Child> = Vec::new();
    for id in 1..=a.cores {
        match client_command(a, seed, port, id).and_then(|mut c| c.spawn().map_err(|e| format!("cannot start fuzzing client {id}: {e}"))) {
            Ok(c) => children.push(c),
            Err(e) => {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(e);
            }
        }
    }
    let mut failed = false;
    let mut last_check = Instant::now();
    while !children.is_empty() {
        if let Err(e) = broker.broker_once() {
            // The clients cannot go on without their broker: stop them, their finds are saved.
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Err(format!("LLMP broker: {e}"));
        }
        thread::sleep(BROKER_SLEEP);
        if last_check.elapsed() >= Duration::from_millis(200) {
            last_check = Instant::now();
            children.retain_mut(|c| match c.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("trapdiff fuzz: a fuzzing client ended with {status}");
                        failed = true;
                    }
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
        }
    }
    // Drain what the last clients sent before they left (their final testcases).
    for _ in 0..10 {
        let _ = broker.broker_once();
    }
    if failed {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::from(u8::from(new_finds(a))))
}

fn log_once(msg: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("{msg}");
    }
}

/// Some client saved a find that was not there before (its stats.json says so).
fn new_finds(a: &FuzzArgs) -> bool {
    (1..=a.cores).any(|id| {
        let p = a.out.join(format!("client-{id}")).join("stats.json");
        let v: serde_json::Value = std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        v["finds"].as_array().is_some_and(|fs| fs.iter().any(|f| f["known"] == false))
    })
}

/// Client `id` of this node: this executable's `fuzz` with the arguments in [`CLIENT_ENV`]
/// and the broker's port and the id in [`PORT_ENV`], [`ID_ENV`].
fn client_command(a: &FuzzArgs, seed: u64, port: u16, id: usize) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable to start a fuzzing client: {e}"))?;
    let args = FuzzArgs { seed: Some(seed), cores: 1, broker: None, connect: None, found: Some(found_dir(a)), ..a.clone() };
    let json = serde_json::to_string(&args).map_err(|e| format!("cannot serialise the client's arguments: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("fuzz").env(CLIENT_ENV, json).env(PORT_ENV, port.to_string()).env(ID_ENV, id.to_string()).stdout(Stdio::null());
    Ok(cmd)
}

/// A client process of a node: attach to the broker on `port` under LibAFL's restarting
/// manager (which starts the fuzzing process again if a backend kills it, with the state it
/// saved), and run the campaign.
pub(crate) fn client(a: FuzzArgs, port: u16, id: usize) -> ExitCode {
    let shmem = match StdShMemProvider::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot set up shared memory for the LLMP client: {e}");
            return ExitCode::from(2);
        }
    };
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let desc = ClientDescription::new(id, 0, CoreId((id - 1) % cores));
    // AlwaysUnique: a client that receives another's new case runs it on its own backends
    // (the outcomes are not sent along), so novelty is judged on real outcomes.
    let setup = setup_restarting_mgr_llmp::<(), CaseInput, MultiMonitor<fn(&str)>, FuzzState, _>(
        shmem,
        EventConfig::AlwaysUnique,
        None,
        port,
        ManagerKind::Client { client_description: desc },
        None,
        ShouldSaveState::OnRestart,
        tuple_list!(),
    );
    let result = setup.and_then(|(state, mgr)| run_client(&a, id, state, mgr));
    match result {
        Ok(()) | Err(Error::ShuttingDown) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: fuzzing client {id}: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_client(a: &FuzzArgs, id: usize, state: Option<FuzzState>, mut mgr: ClientManager) -> Result<(), Error> {
    let out = a.out.join(format!("client-{id}"));
    std::fs::create_dir_all(&out).map_err(|e| Error::illegal_state(format!("cannot create {}: {e}", out.display())))?;
    install_panic_hook(&out);
    let backends = make_backends(a).map_err(Error::illegal_state)?;
    let seeds = if state.is_some() { Vec::new() } else { load_seeds(&a.paths) };
    let cfg = Config {
        seed: a.seed.unwrap_or(1) + 1000 * id as u64,
        time: a.time,
        iters: a.iters,
        out: Some(out),
        found: Some(found_dir(a)),
        minimise_budget: a.minimise_budget,
        progress: false,
        known: crate::paths::known_list().map_err(Error::illegal_state)?,
    };
    campaign_with(&cfg, backends, seeds, &mut mgr, state).map_err(|e| Error::illegal_state(e.to_string()))?;
    // Done in time: no restart (the restarting manager sees the exit was asked for).
    mgr.send_exiting()?;
    Ok(())
}
