//! Contended cases: one side writing and one reading, flat out for a fixed time, each pinned
//! to its own core; the result is the total operations per second of both.
//!
//! Across processes the harness `fork`s two children (which only make crate calls and
//! syscalls, then `_exit`); `std::sync::Mutex` runs the same protocol on two threads.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::affinity::{pin_to, CorePair};
use crate::child::{fork_child, has_exited, reap, Shared, ZeroedAtomics, PATIENCE};
use crate::cleanup::interrupted;
use crate::measure::Batch;

/// The writer's role number.
pub const WRITER: usize = 0;
/// The reader's role number.
pub const READER: usize = 1;

/// Operations between two looks at the stop flag.
const CHUNK: u64 = 16;

/// A subject of a contended case.
pub trait Pair {
    /// Builds the worker for `role` ([`WRITER`] or [`READER`]) in the process or thread
    /// that runs it: a forked child calls this right after `fork` (attaching by key, as a
    /// real second process would); a thread calls it on its own stack.
    ///
    /// # Errors
    ///
    /// A message saying why the worker could not attach.
    fn worker(&self, role: usize) -> Result<Batch<'_>, String>;
}

/// What the two sides and the parent share.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Control {
    ready: AtomicU32,
    go: AtomicU32,
    stop: AtomicU32,
    failed: AtomicU32,
    counts: [AtomicU64; 2],
}

// SAFETY: all-zero is the default Control, and every field is an atomic.
unsafe impl ZeroedAtomics for Control {}

/// Waits (yielding the core) until the parent says go; false if it said stop first.
fn await_go(ctl: &Control) -> bool {
    while ctl.go.load(Ordering::Acquire) == 0 {
        if ctl.stop.load(Ordering::Acquire) != 0 {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// One side: build the worker, report ready, run flat out until stop, store the count.
fn side(pair: &dyn Pair, role: usize, core: usize, ctl: &Control) -> i32 {
    let _ = pin_to(core);
    let mut work = match pair.worker(role) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("compare: contended worker {role} could not start: {e}");
            ctl.failed.store(1, Ordering::Release);
            ctl.ready.fetch_add(1, Ordering::AcqRel);
            return 1;
        }
    };
    ctl.ready.fetch_add(1, Ordering::AcqRel);
    if !await_go(ctl) {
        return 0;
    }
    let mut count = 0u64;
    while ctl.stop.load(Ordering::Relaxed) == 0 {
        work(black_box(CHUNK));
        count += CHUNK;
    }
    ctl.counts[role].store(count, Ordering::Release);
    drop(work);
    0
}

/// Sleeps `duration` in short steps, returning early on an interrupt.
fn sleep_unless_interrupted(duration: Duration) {
    let until = Instant::now() + duration;
    while !interrupted() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// Waits until both sides are ready; the error says why not.
fn await_ready(ctl: &Control, alive: impl Fn() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while ctl.ready.load(Ordering::Acquire) < 2 {
        if started.elapsed() > PATIENCE {
            return Err("the workers did not get ready in time".into());
        }
        if interrupted() {
            return Err("interrupted".into());
        }
        if !alive() {
            return Err("a worker died before getting ready".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    if ctl.failed.load(Ordering::Acquire) != 0 {
        return Err("a worker could not attach (see above)".into());
    }
    Ok(())
}

/// Starts both sides, lets them run `duration`, stops them; total operations per second.
fn drive(ctl: &Control, duration: Duration, alive: impl Fn() -> bool) -> Result<f64, String> {
    if let Err(e) = await_ready(ctl, alive) {
        ctl.stop.store(1, Ordering::Release);
        return Err(e);
    }
    let start = Instant::now();
    ctl.go.store(1, Ordering::Release);
    sleep_unless_interrupted(duration);
    ctl.stop.store(1, Ordering::Release);
    let elapsed = start.elapsed();
    if interrupted() {
        return Err("interrupted".into());
    }
    Ok(elapsed.as_secs_f64())
}

/// The result of one contended run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Operations per second of both sides together.
    pub ops_per_s: f64,
    /// The writer's part of the operations, 0 to 1 (0.5 when the lock alternates fairly).
    pub writer_share: f64,
    /// The writer's operations per second.
    pub writer_per_s: f64,
    /// The reader's operations per second (0 when the reader did not run).
    pub reader_per_s: f64,
}

fn total(ctl: &Control, seconds: f64) -> Rate {
    let writes = ctl.counts[WRITER].load(Ordering::Acquire);
    let reads = ctl.counts[READER].load(Ordering::Acquire);
    let ops = writes + reads;
    Rate {
        ops_per_s: ops as f64 / seconds,
        writer_share: if ops == 0 {
            f64::NAN
        } else {
            writes as f64 / ops as f64
        },
        writer_per_s: writes as f64 / seconds,
        reader_per_s: reads as f64 / seconds,
    }
}

/// Runs the two sides as forked child processes, the writer on `cores.first` and the
/// reader on `cores.second`; returns their operations per second.
///
/// # Errors
///
/// A worker could not attach, died, hung, or the run was interrupted.
pub fn run_processes(pair: &dyn Pair, cores: CorePair, duration: Duration) -> Result<Rate, String> {
    run_roles(pair, &[WRITER, READER], cores, duration)
}

/// Runs the writer alone, as a forked child on `cores.first`; its operations per second.
///
/// # Errors
///
/// As [`run_processes`].
pub fn run_writer_alone(
    pair: &dyn Pair,
    cores: CorePair,
    duration: Duration,
) -> Result<f64, String> {
    run_roles(pair, &[WRITER], cores, duration).map(|r| r.writer_per_s)
}

fn run_roles(
    pair: &dyn Pair,
    roles: &[usize],
    cores: CorePair,
    duration: Duration,
) -> Result<Rate, String> {
    let shared = Shared::<Control>::new()?;
    let ctl = shared.get();
    // The roles that do not run count as ready.
    ctl.ready.store((2 - roles.len()) as u32, Ordering::Release);
    let mut children = Vec::new();
    for &role in roles {
        let core = cores.for_role(role);
        match fork_child(core, || side(pair, role, core, ctl)) {
            Ok(pid) => children.push(pid),
            Err(e) => {
                ctl.stop.store(1, Ordering::Release);
                reap(&children);
                return Err(e);
            }
        }
    }
    let alive = || children.iter().all(|&pid| !has_exited(pid));
    let result = drive(ctl, duration, alive);
    let statuses = reap(&children);
    let seconds = result?;
    if let Some(bad) = statuses.iter().find(|s| **s != Some(0)) {
        return Err(format!("a worker exited abnormally ({bad:?})"));
    }
    Ok(total(ctl, seconds))
}

/// Runs the two sides as two threads of this process, pinned like the processes of
/// [`run_processes`]; returns their operations per second.
///
/// # Errors
///
/// A worker could not start or panicked, or the run was interrupted.
pub fn run_threads(
    pair: &(dyn Pair + Sync),
    cores: CorePair,
    duration: Duration,
) -> Result<Rate, String> {
    let ctl = Control::default();
    let result = std::thread::scope(|s| {
        let handles: Vec<_> = [WRITER, READER]
            .into_iter()
            .map(|role| {
                let ctl = &ctl;
                s.spawn(move || side(pair, role, cores.for_role(role), ctl))
            })
            .collect();
        let alive = || handles.iter().all(|h| !h.is_finished());
        let result = drive(&ctl, duration, alive);
        ctl.stop.store(1, Ordering::Release);
        let codes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        match (result, codes.iter().all(|c| matches!(c, Ok(0)))) {
            (Ok(s), true) => Ok(s),
            (Ok(_), false) => Err("a worker thread failed".to_string()),
            (Err(e), _) => Err(e),
        }
    });
    let seconds = result?;
    Ok(total(&ctl, seconds))
}
