//! `takeover_after_kill`: how long after a lock holder is `SIGKILL`ed another process,
//! blocked waiting for the lock, holds it.
//!
//! One sample: a forked *holder* takes the lock and sleeps; a forked *waiter* blocks on the
//! lock; once the waiter is asleep in the kernel, the harness notes the time and kills the
//! holder; the waiter notes the time the moment it holds the lock (`CLOCK_MONOTONIC`, the
//! same clock in every process). The sample is the difference. The kill comes a varying
//! while after the waiter fell asleep, so a lock that polls for dead holders is caught at
//! every phase of its poll.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::affinity::CorePair;
use crate::child::{
    await_child, fork_child, is_sleeping, kill, now_ns, reap, Shared, ZeroedAtomics,
};

/// A lock that a holder can take and die with, and a waiter can then get.
pub trait Holdable {
    /// In the holder: takes the lock, calls `held`, and never gives it back (sleeps until
    /// killed). Returns only on failure.
    ///
    /// # Errors
    ///
    /// Why the lock could not be taken.
    fn hold(&self, held: &dyn Fn()) -> Result<(), String>;

    /// In the waiter: calls `waiting`, blocks until it holds the lock, calls `got` at once,
    /// then repairs what the dead holder may have left and releases.
    ///
    /// # Errors
    ///
    /// Why the lock could not be taken.
    fn wait(&self, waiting: &dyn Fn(), got: &dyn Fn()) -> Result<(), String>;
}

#[derive(Debug, Default)]
#[repr(C)]
struct Control {
    held: AtomicU32,
    waiting: AtomicU32,
    got_at: AtomicU64,
}

// SAFETY: all-zero is the default Control, and every field is an atomic.
unsafe impl ZeroedAtomics for Control {}

/// Sleeps until killed.
pub fn sleep_forever() -> ! {
    loop {
        // SAFETY: pause takes no arguments; it returns only after a caught signal.
        unsafe { libc::pause() };
    }
}

fn report(what: &str, r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("compare: takeover {what}: {e}");
            1
        }
    }
}

/// One sample, in nanoseconds from the kill to the waiter's hold; `settle` is how long the
/// waiter sleeps in the kernel before the kill.
///
/// # Errors
///
/// A child failed, died unexpectedly, or did not get there in time.
pub fn sample(lock: &dyn Holdable, cores: CorePair, settle: Duration) -> Result<f64, String> {
    let shared = Shared::<Control>::new()?;
    let ctl = shared.get();
    let holder = fork_child(cores.second, || {
        report(
            "holder",
            lock.hold(&|| ctl.held.store(1, Ordering::Release)),
        )
    })?;
    let mut children = vec![holder];
    let result = (|| -> Result<f64, String> {
        await_child(
            holder,
            "holding the lock",
            Duration::from_micros(100),
            || ctl.held.load(Ordering::Acquire) != 0,
        )?;
        let waiter = fork_child(cores.second, || {
            report(
                "waiter",
                lock.wait(&|| ctl.waiting.store(1, Ordering::Release), &|| {
                    ctl.got_at.store(now_ns(), Ordering::Release)
                }),
            )
        })?;
        children.push(waiter);
        await_child(
            waiter,
            "waiting for the lock",
            Duration::from_micros(100),
            || ctl.waiting.load(Ordering::Acquire) != 0,
        )?;
        await_child(
            waiter,
            "sleeping on the lock",
            Duration::from_micros(100),
            || is_sleeping(waiter),
        )?;
        std::thread::sleep(settle);
        if ctl.got_at.load(Ordering::Acquire) != 0 {
            return Err("the waiter got the lock while the holder lived".into());
        }
        let killed_at = now_ns();
        kill(holder);
        await_child(
            waiter,
            "holding the lock",
            Duration::from_micros(50),
            || ctl.got_at.load(Ordering::Acquire) != 0,
        )?;
        Ok(ctl.got_at.load(Ordering::Acquire).saturating_sub(killed_at) as f64)
    })();
    // The holder dies in every case; the waiter too when the sample failed (else it exits
    // by itself once it released).
    let doomed = if result.is_ok() {
        &children[..1]
    } else {
        &children[..]
    };
    for &pid in doomed {
        kill(pid);
    }
    let statuses = reap(&children);
    let took = result?;
    if children.len() == 2 && statuses[1] != Some(0) {
        return Err(format!("the waiter exited abnormally ({:?})", statuses[1]));
    }
    Ok(took)
}

/// The settle time of the `k`th sample: 3 ms plus a step through 0–2 ms, so the kill falls
/// at every phase of a waiter that polls every 2 ms.
pub fn settle(k: u32) -> Duration {
    Duration::from_micros(3000 + u64::from(k.wrapping_mul(773) % 2000))
}

/// `takeover_after_kill` for `lock`: one sample per call.
pub fn sampled(lock: impl Holdable + 'static, cores: CorePair) -> crate::subjects::Sample {
    let mut k = 0u32;
    Box::new(move || {
        k = k.wrapping_add(1);
        sample(&lock, cores, settle(k))
    })
}
