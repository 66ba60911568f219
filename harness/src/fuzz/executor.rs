//! The executor: one case on every chosen backend (the model in process, refhyp/KVM as
//! persistent live instances), an outcome per backend into the [`OutcomesObserver`]. Each
//! backend runs on its own thread, so the backends of one exec run at the same time.
//!
//! LibAFL's own `DiffExecutor` composes exactly two executors and compares exit kinds; here
//! the interesting difference is inside the outcomes (syndromes, exits, final state), so one
//! executor runs N backends and the objective feedback diffs what they observed.

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use libafl::executors::{Executor, ExitKind, HasObservers};
use libafl::state::HasExecutions;
use libafl::Error;
use libafl_bolts::tuples::{tuple_list, tuple_list_type, RefIndexable};
use serde::Serialize;
use trapdiff_arch::outcome::End;
use trapdiff_arch::{Case, Outcome};

use crate::backend::Backend;

use super::input::CaseInput;
use super::observers::OutcomesObserver;

/// Executions and time spent per backend.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendStats {
    pub name: String,
    pub execs: u64,
    #[serde(serialize_with = "secs")]
    pub busy: Duration,
    pub errors: u64,
    pub timeouts: u64,
    /// The longest single run, and the case it was (to find what makes a backend slow).
    #[serde(serialize_with = "secs")]
    pub slowest: Duration,
    #[serde(skip)]
    pub slowest_case: Option<Case>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl BackendStats {
    /// Executions per second of this backend's own time (what it would do alone).
    pub fn execs_per_sec(&self) -> f64 {
        let t = self.busy.as_secs_f64();
        if t > 0.0 {
            self.execs as f64 / t
        } else {
            0.0
        }
    }
}

pub type Observers = tuple_list_type!(OutcomesObserver);

thread_local! {
    /// The backend and case running now, for the panic hook: a backend that aborts the
    /// process (a panic that cannot unwind, e.g. inside a C library binding) still leaves
    /// the case that did it behind (see `fuzz::install_panic_hook`).
    pub(crate) static CURRENT: std::cell::RefCell<Option<(String, Arc<Case>)>> = const { std::cell::RefCell::new(None) };
}

/// Where a backend runs. Live backends (those with [`Backend::phases`]: refhyp, kvm) spend an
/// exec waiting on QEMU, so each gets its own long-lived thread and they wait at the same
/// time; they are driven only from that thread, the one a QEMU child it (re)starts ties its
/// PR_SET_PDEATHSIG to (`backend::qemu`), so it lives as long as the executor, not one exec.
/// An in-process backend (the model) runs on the fuzzing thread meanwhile: a thread hop per
/// exec would cost it more than it saves (two wake-ups on a busy machine).
enum Place {
    Here(Box<dyn Backend>),
    Thread { jobs: Option<mpsc::Sender<Arc<Case>>>, done: mpsc::Receiver<(Outcome, Duration)>, thread: Option<thread::JoinHandle<()>> },
}

struct Worker {
    name: String,
    place: Place,
}

/// Run one case on `backend`, noting it for the panic hook: a backend that aborts the
/// process leaves its case behind.
fn timed_run(name: &str, backend: &mut dyn Backend, case: &Arc<Case>) -> (Outcome, Duration) {
    CURRENT.with(|c| *c.borrow_mut() = Some((name.to_string(), Arc::clone(case))));
    let t = Instant::now();
    let o = backend.run(case);
    let took = t.elapsed();
    CURRENT.with(|c| *c.borrow_mut() = None);
    (o, took)
}

impl Worker {
    fn start(mut backend: Box<dyn Backend>) -> Worker {
        let name = backend.name().to_string();
        if backend.phases().is_none() {
            return Worker { name, place: Place::Here(backend) };
        }
        let (jobs, job_rx) = mpsc::channel::<Arc<Case>>();
        let (done_tx, done) = mpsc::channel();
        let tname = name.clone();
        let thread = thread::Builder::new()
            .name(format!("backend-{name}"))
            .spawn(move || {
                for case in job_rx {
                    if done_tx.send(timed_run(&tname, backend.as_mut(), &case)).is_err() {
                        return;
                    }
                }
                // The executor is gone: the backend (and any QEMU child) ends with this thread.
            })
            .ok();
        Worker { name, place: Place::Thread { jobs: Some(jobs), done, thread } }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; wait so its QEMU is gone when we return.
        if let Place::Thread { jobs, thread, .. } = &mut self.place {
            jobs.take();
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Runs each case on every backend at once (see [`Place`]): an exec costs the slowest
/// backend's time, not the sum.
pub struct BackendsExecutor {
    workers: Vec<Worker>,
    observers: Observers,
    pub stats: Vec<BackendStats>,
}

impl std::fmt::Debug for BackendsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.workers.iter().map(|w| w.name.as_str()).collect();
        write!(f, "BackendsExecutor({})", names.join(","))
    }
}

impl BackendsExecutor {
    pub fn new(backends: Vec<Box<dyn Backend>>) -> BackendsExecutor {
        let stats = backends.iter().map(|b| BackendStats { name: b.name().to_string(), ..BackendStats::default() }).collect();
        let workers = backends.into_iter().map(Worker::start).collect();
        BackendsExecutor { workers, observers: tuple_list!(OutcomesObserver::new()), stats }
    }

    pub fn names(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.name.clone()).collect()
    }

    /// Run `case` on every backend.
    pub fn run_all(&mut self, case: &Case) -> Vec<(String, Outcome)> {
        let all: Vec<usize> = (0..self.workers.len()).collect();
        self.run_some(case, &all)
    }

    /// Indices of the named backends (the minimiser runs only the ones that disagree).
    pub fn indices(&self, names: &[&str]) -> Vec<usize> {
        (0..self.workers.len()).filter(|i| names.contains(&self.workers[*i].name.as_str())).collect()
    }

    /// Run `case` on the backends at `which`, all at once; the outcomes in backend order.
    pub fn run_some(&mut self, case: &Case, which: &[usize]) -> Vec<(String, Outcome)> {
        let job = Arc::new(case.clone());
        let chosen: Vec<usize> = (0..self.workers.len()).filter(|i| which.contains(i)).collect();
        // The live backends start, the in-process ones run meanwhile, then the live ones are
        // waited for.
        for &i in &chosen {
            let w = &self.workers[i];
            if let Place::Thread { jobs, .. } = &w.place {
                if jobs.as_ref().is_none_or(|j| j.send(Arc::clone(&job)).is_err()) {
                    dead(&w.name);
                }
            }
        }
        let mut results: Vec<Option<(Outcome, Duration)>> = chosen.iter().map(|_| None).collect();
        for (k, &i) in chosen.iter().enumerate() {
            let w = &mut self.workers[i];
            if let Place::Here(b) = &mut w.place {
                results[k] = Some(timed_run(&w.name, b.as_mut(), &job));
            }
        }
        for (k, &i) in chosen.iter().enumerate() {
            let w = &self.workers[i];
            if let Place::Thread { done, .. } = &w.place {
                let Ok(r) = done.recv() else { dead(&w.name) };
                results[k] = Some(r);
            }
        }
        let mut out = Vec::with_capacity(chosen.len());
        for (&i, r) in chosen.iter().zip(results) {
            let Some((o, took)) = r else { dead(&self.workers[i].name) };
            let st = &mut self.stats[i];
            st.busy += took;
            st.execs += 1;
            if took > st.slowest {
                st.slowest = took;
                st.slowest_case = Some(case.clone());
            }
            match o.end {
                End::BackendError { .. } => st.errors += 1,
                End::Timeout => st.timeouts += 1,
                _ => {}
            }
            out.push((self.workers[i].name.clone(), o));
        }
        out
    }

    /// LibAFL's verdict on a set of outcomes: a backend failure is a crash, a watchdog a
    /// timeout; divergences are the objective feedback's business.
    pub fn exit_kind(outcomes: &[(String, Outcome)]) -> ExitKind {
        if outcomes.iter().any(|(_, o)| matches!(o.end, End::BackendError { .. })) {
            ExitKind::Crash
        } else if outcomes.iter().any(|(_, o)| o.end == End::Timeout) {
            ExitKind::Timeout
        } else {
            ExitKind::Ok
        }
    }
}

/// A backend's thread is gone: its backend panicked past its own catch. End the client as
/// that panic would have on one thread (the supervisor or the restarting manager starts it
/// again; the panic hook left the case in `last-panic.json`).
fn dead(name: &str) -> ! {
    panic!("the {name} backend's thread died (its backend panicked); this client stops")
}

impl<EM, S: HasExecutions, Z> Executor<EM, CaseInput, S, Z> for BackendsExecutor {
    fn run_target(&mut self, _fuzzer: &mut Z, state: &mut S, _mgr: &mut EM, input: &CaseInput) -> Result<ExitKind, Error> {
        *state.executions_mut() += 1;
        let outcomes = self.run_all(&input.0);
        let kind = Self::exit_kind(&outcomes);
        self.observers.0.outcomes = outcomes;
        Ok(kind)
    }
}

impl HasObservers for BackendsExecutor {
    type Observers = Observers;
    fn observers(&self) -> RefIndexable<&Self::Observers, Self::Observers> {
        RefIndexable::from(&self.observers)
    }
    fn observers_mut(&mut self) -> RefIndexable<&mut Self::Observers, Self::Observers> {
        RefIndexable::from(&mut self.observers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Phases;

    /// A backend that takes a fixed time per case and notes the thread it ran on; `live` ones
    /// report phases, as the QEMU backends do.
    struct Slow {
        name: String,
        live: bool,
        took: Duration,
        threads: Arc<std::sync::Mutex<Vec<(String, thread::ThreadId)>>>,
    }

    impl Backend for Slow {
        fn name(&self) -> &str {
            &self.name
        }
        fn run(&mut self, _case: &Case) -> Outcome {
            self.threads.lock().map(|mut t| t.push((self.name.clone(), thread::current().id()))).ok();
            thread::sleep(self.took);
            Outcome::default()
        }
        fn phases(&self) -> Option<Phases> {
            self.live.then(Phases::default)
        }
    }

    #[test]
    fn an_exec_costs_the_slowest_backend_not_the_sum() {
        let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let slow = |n: &str, live: bool| -> Box<dyn Backend> {
            Box::new(Slow { name: n.into(), live, took: Duration::from_millis(60), threads: Arc::clone(&threads) })
        };
        let mut ex = BackendsExecutor::new(vec![slow("model", false), slow("a", true), slow("b", true)]);
        let case = crate::fuzz::input::builtin_seeds().remove(0);
        let t = Instant::now();
        for _ in 0..3 {
            let out = ex.run_all(&case);
            assert_eq!(out.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["model", "a", "b"], "outcomes in backend order");
        }
        let took = t.elapsed();
        // One after the other would be 3 x 3 x 60 ms = 540 ms; at once, 3 x 60 ms.
        assert!(took < Duration::from_millis(400), "3 execs took {took:?}");
        assert!(ex.stats.iter().all(|s| s.execs == 3 && s.busy >= Duration::from_millis(180)), "{:?}", ex.stats);
        // The in-process backend runs here; each live one stays on its one thread (its QEMU
        // is tied to it).
        let seen = threads.lock().map(|t| t.clone()).unwrap_or_default();
        let me = thread::current().id();
        let on = |n: &str| seen.iter().filter(|(b, _)| b == n).map(|(_, t)| format!("{t:?}")).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(on("model"), [format!("{me:?}")].into_iter().collect());
        let (a, b) = (on("a"), on("b"));
        assert!(a.len() == 1 && b.len() == 1 && a != b && !a.contains(&format!("{me:?}")), "{seen:?}");
        // Only the chosen backends run.
        assert_eq!(ex.run_some(&case, &[1]).len(), 1);
        assert_eq!(ex.stats.iter().map(|s| s.execs).collect::<Vec<_>>(), [3, 4, 3]);
    }
}
