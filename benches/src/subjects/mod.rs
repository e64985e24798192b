//! The subjects of the comparison and the cases each one supports.
//!
//! Every subject builds, for a case, either a timed [`Batch`] that owns everything it made
//! (dropping it removes the segment and lock, and stops any helper process), a contended
//! [`Pair`], a sampled measurement, or says why it does not support the case. One file per
//! family: [`nc`] (neocortex with each lock), [`seed`] (the seed crate), [`shm_raw`]
//! (`shared_memory` + `raw_sync`), [`mmap_sync`], [`iceoryx2`], [`lock_floors`] (bare locks around a
//! value), [`seqlock_floor`] (a bare sequence lock), [`copy_floors`] (memcpy and the segment
//! cycle) and [`notify_floors`] (futex, eventfd and pipe ping-pong).

use std::hint::black_box;

use crate::affinity::CorePair;
use crate::contended::{Pair, WRITER};
use crate::measure::Batch;

mod cases;
pub mod copy_floors;
pub mod iceoryx2;
pub mod lock_floors;
pub mod mmap_sync;
pub mod nc;
pub mod notify_floors;
pub mod seed;
pub mod seqlock_floor;
pub mod shm_raw;

pub use cases::Case;
pub use nc::{new_cortex, remove_cortex};
pub use seed::new_seed;

/// Bytes of the value of `inplace_write_64m`.
pub const BIG: usize = 64 << 20;

/// Bytes of the value of `uncontended_read_4k`, `uncontended_write_4k` and `contended_4k`.
pub const PAGE: usize = 4096;

/// Bytes of the slice of `slice_read_1m`.
pub const SLICE: usize = 1 << 20;

/// The subjects, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// `Cortex<T, neocortex::Mutex>`: another name of `Semaphore` (the same type).
    NcMutex,
    /// `Cortex<T, neocortex::Semaphore>`: the futex lock, holders known by member tokens.
    NcSemaphore,
    /// `Cortex<T, neocortex::SysvSemaphore>`: the SysV semaphore lock.
    NcSysvSemaphore,
    /// `Cortex<T, neocortex::RwSemaphore>`: SysV reader-writer semaphores.
    NcRwSemaphore,
    /// `Cortex<T, neocortex::SeqLock>`: optimistic readers, writers locked among themselves.
    NcSeqLock,
    /// The seed crate, `neocortex` 3.0.3 from crates.io, with its POSIX semaphore lock.
    Seed,
    /// `shared_memory` 0.12 with a `raw_sync` 0.1 `Mutex` (or `Event`s) in the mapping.
    SharedMemory,
    /// `mmap-sync` 2.0 (Cloudflare): one writer, wait-free readers over two copies.
    MmapSync,
    /// iceoryx2 0.10 (Eclipse): a blackboard, and event services for the ping-pong.
    Iceoryx2,
    /// `std::sync::Mutex`, in-process: the floor.
    StdMutex,
    /// A SysV semaphore with `SEM_UNDO` around the access.
    SemopUndo,
    /// A futex mutex (Drepper's mutex 3) in a SysV segment; a futex ping-pong.
    Futex,
    /// A robust process-shared pthread mutex in a SysV segment.
    PthreadRobust,
    /// A bare single-writer sequence lock in a SysV segment.
    BareSeqlock,
    /// No lock: a load, or `memcpy` to or from a SysV segment.
    Memcpy,
    /// `shmget`+`shmat`+`shmdt`+`IPC_RMID` plus `semget`+`SETVAL`+`IPC_RMID`.
    ShmSemCycle,
    /// Two `eventfd`s, ping-pong.
    Eventfd,
    /// Two pipes, ping-pong.
    Pipe,
}

impl Subject {
    /// Every subject, in report order.
    pub const ALL: [Subject; 18] = [
        Subject::NcMutex,
        Subject::NcSemaphore,
        Subject::NcSysvSemaphore,
        Subject::NcRwSemaphore,
        Subject::NcSeqLock,
        Subject::Seed,
        Subject::SharedMemory,
        Subject::MmapSync,
        Subject::Iceoryx2,
        Subject::StdMutex,
        Subject::SemopUndo,
        Subject::Futex,
        Subject::PthreadRobust,
        Subject::BareSeqlock,
        Subject::Memcpy,
        Subject::ShmSemCycle,
        Subject::Eventfd,
        Subject::Pipe,
    ];

    /// The subject's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Subject::NcMutex => "neocortex-mutex",
            Subject::NcSemaphore => "neocortex-semaphore",
            Subject::NcSysvSemaphore => "neocortex-sysvsemaphore",
            Subject::NcRwSemaphore => "neocortex-rwsemaphore",
            Subject::NcSeqLock => "neocortex-seqlock",
            Subject::Seed => "seed-neocortex-3.0.3",
            Subject::SharedMemory => "shared_memory+raw_sync",
            Subject::MmapSync => "mmap-sync-2.0.4",
            Subject::Iceoryx2 => "iceoryx2-0.10.0",
            Subject::StdMutex => "std-mutex",
            Subject::SemopUndo => "libc-semop-undo",
            Subject::Futex => "libc-futex",
            Subject::PthreadRobust => "pthread-robust",
            Subject::BareSeqlock => "bare-seqlock",
            Subject::Memcpy => "libc-memcpy",
            Subject::ShmSemCycle => "libc-shm-sem-cycle",
            Subject::Eventfd => "libc-eventfd",
            Subject::Pipe => "libc-pipe",
        }
    }

    /// Whether the subject is a floor (in-process `std` or bare `libc`) rather than a crate.
    pub fn is_floor(self) -> bool {
        !matches!(
            self,
            Subject::NcMutex
                | Subject::NcSemaphore
                | Subject::NcSysvSemaphore
                | Subject::NcRwSemaphore
                | Subject::NcSeqLock
                | Subject::Seed
                | Subject::SharedMemory
                | Subject::MmapSync
                | Subject::Iceoryx2
        )
    }

    /// Looks a subject up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Builds what the subject runs for `case`; `cores` says where helper processes go.
    ///
    /// # Errors
    ///
    /// A message saying why the setup (creating the segment or lock) failed.
    pub fn setup(self, case: Case, cores: CorePair) -> Result<Setup, String> {
        match self {
            Subject::NcMutex => Ok(Setup::Unsupported(
                "not run: `Mutex` is another name of `Semaphore` (the same type, the same \
                 code); see neocortex-semaphore",
            )),
            Subject::NcSemaphore => nc::setup::<neocortex::Semaphore>(case, cores),
            Subject::NcSysvSemaphore => nc::setup::<neocortex::SysvSemaphore>(case, cores),
            Subject::NcRwSemaphore => nc::setup::<neocortex::RwSemaphore>(case, cores),
            Subject::NcSeqLock => nc::setup::<neocortex::SeqLock>(case, cores),
            Subject::Seed => seed::setup(case),
            Subject::SharedMemory => shm_raw::setup(case, cores),
            Subject::MmapSync => mmap_sync::setup(case),
            Subject::Iceoryx2 => iceoryx2::setup(case, cores),
            Subject::StdMutex => lock_floors::std_setup(case),
            Subject::SemopUndo => lock_floors::semop_setup(case, cores),
            Subject::Futex => match case {
                Case::NotifyRoundtrip => notify_floors::futex_setup(cores),
                _ => lock_floors::futex_setup(case, cores),
            },
            Subject::PthreadRobust => lock_floors::robust_setup(case, cores),
            Subject::BareSeqlock => seqlock_floor::setup(case),
            Subject::Memcpy => copy_floors::memcpy_setup(case),
            Subject::ShmSemCycle => copy_floors::cycle_setup(case),
            Subject::Eventfd => notify_floors::eventfd_setup(case, cores),
            Subject::Pipe => notify_floors::pipe_setup(case, cores),
        }
    }
}

/// Runs one sample of a sampled case; returns its value in nanoseconds.
pub type Sample = Box<dyn FnMut() -> Result<f64, String>>;

/// What a subject runs for a case.
pub enum Setup {
    /// A timed batch of operations (owning its segment and lock).
    Timed(Batch<'static>),
    /// A timed batch, and the same work done with bare `libc` on the same segment, to be
    /// timed interleaved with it (the "same segment" floor of `inplace_write_64m`).
    TimedWithFloor(Batch<'static>, Batch<'static>),
    /// Two forked processes.
    Processes(Box<dyn Pair>),
    /// The writer forked alone, then writer and reader forked together
    /// (`seqlock_1w1r`).
    SoloAndPair(Box<dyn Pair>),
    /// Two threads of this process.
    Threads(Box<dyn Pair + Sync>),
    /// Separate samples, each measured by the subject itself (`takeover_after_kill`).
    Sampled(Sample),
    /// The subject does not support the case, and why.
    Unsupported(&'static str),
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setup::Timed(_) => f.write_str("Timed(..)"),
            Setup::TimedWithFloor(..) => f.write_str("TimedWithFloor(..)"),
            Setup::Processes(_) => f.write_str("Processes(..)"),
            Setup::SoloAndPair(_) => f.write_str("SoloAndPair(..)"),
            Setup::Threads(_) => f.write_str("Threads(..)"),
            Setup::Sampled(_) => f.write_str("Sampled(..)"),
            Setup::Unsupported(why) => write!(f, "Unsupported({why:?})"),
        }
    }
}

fn timed(f: impl FnMut(u64) + 'static) -> Result<Setup, String> {
    Ok(Setup::Timed(Box::new(f)))
}

/// A value the contended cases write and read.
pub trait Payload: Copy + Send + Sync + 'static {
    /// The value at the start.
    fn initial() -> Self;
    /// Changes the value a little for the `i`th write.
    fn stamp(&mut self, i: u64);
}

impl Payload for u64 {
    fn initial() -> Self {
        7
    }
    fn stamp(&mut self, i: u64) {
        *self = i;
    }
}

impl Payload for [u8; PAGE] {
    fn initial() -> Self {
        [0x5a; PAGE]
    }
    fn stamp(&mut self, i: u64) {
        self[..8].copy_from_slice(&i.to_ne_bytes());
    }
}

/// The 64 MiB source of `inplace_write_64m`, one for all subjects of the case (so the
/// placement of its pages does not favour one): non-zero, so its pages are real memory, not
/// the zero page. It is freed when the case's last subject drops it: a harness that kept
/// 64 MiB mapped would make every child it forks later slower to exit, and
/// `takeover_after_kill` times an exit.
fn big_source() -> std::sync::Arc<Vec<u8>> {
    use std::sync::{Arc, Mutex, PoisonError, Weak};
    static SOURCE: Mutex<Weak<Vec<u8>>> = Mutex::new(Weak::new());
    let mut cached = SOURCE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(source) = cached.upgrade() {
        return source;
    }
    let source = Arc::new((0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    *cached = Arc::downgrade(&source);
    source
}

/// The writer or reader loop of a contended case over `write`/`read` closures.
fn side<T: Payload>(
    role: usize,
    mut write: impl FnMut(T) + 'static,
    mut read: impl FnMut() -> T + 'static,
) -> Batch<'static> {
    if role == WRITER {
        let mut v = T::initial();
        let mut i = 0u64;
        Box::new(move |n| {
            for _ in 0..n {
                i += 1;
                v.stamp(i);
                write(black_box(v));
            }
        })
    } else {
        Box::new(move |n| {
            for _ in 0..n {
                black_box(read());
            }
        })
    }
}

/// A timed batch that reads a 4 KiB value by value `n` times through `read`.
fn read_4k_batch(mut read: impl FnMut() -> [u8; PAGE] + 'static) -> Result<Setup, String> {
    timed(move |n| {
        for _ in 0..n {
            black_box(read());
        }
    })
}

fn show(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn show_debug(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

/// Why the seqlock_1w1r case does not run a subject whose two-process figures are those
/// of `contended_8b`.
const SEE_CONTENDED: &str = "not run: the same two processes as contended_8b, whose figures \
                             say it (the writer-alone rate matters for optimistic readers)";
