//! The per-job watchdog: a one-shot SIGALRM that kicks the vCPU thread out of KVM_RUN.
//!
//! api.rst 4.10 (KVM_RUN, `immediate_exit`): "The common use is to... set immediate_exit
//! from a signal handler"; a signal that arrives while the vCPU runs makes KVM_RUN return
//! -EINTR, and one that arrives just before it is not lost because the handler also sets
//! `immediate_exit`, which makes the next KVM_RUN return -EINTR at once.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;

use kvm_bindings::kvm_run;

static RUN: AtomicPtr<kvm_run> = AtomicPtr::new(std::ptr::null_mut());
static FIRED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_alarm(_sig: libc::c_int) {
    FIRED.store(true, Ordering::SeqCst);
    let run = RUN.load(Ordering::SeqCst);
    if !run.is_null() {
        // SAFETY: RUN points at the vCPU's mmapped kvm_run while a Watchdog is armed (set in
        // arm, cleared in Drop before the vCPU is dropped); a byte store is async-signal-safe.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// Install the SIGALRM handler once, without SA_RESTART so KVM_RUN is interrupted.
pub fn install() {
    // SAFETY: sigaction is plain data; zeroed is a valid empty mask/flags.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = 0;
    // SAFETY: installs a handler that only touches atomics and a volatile byte.
    unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
}

/// An armed watchdog; disarmed on drop.
#[derive(Debug)]
pub struct Watchdog(());

impl Watchdog {
    /// # Safety
    /// `run` must stay mapped until the returned Watchdog is dropped.
    pub unsafe fn arm(run: *mut kvm_run, timeout: Duration) -> Watchdog {
        FIRED.store(false, Ordering::SeqCst);
        RUN.store(run, Ordering::SeqCst);
        set_timer(timeout);
        Watchdog(())
    }

    pub fn fired(&self) -> bool {
        FIRED.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        set_timer(Duration::ZERO);
        RUN.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

fn set_timer(d: Duration) {
    let tv = libc::timeval { tv_sec: d.as_secs() as libc::time_t, tv_usec: d.subsec_micros() as libc::suseconds_t };
    let it = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: tv };
    // SAFETY: it is a valid itimerval; the old value is not wanted.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
}
