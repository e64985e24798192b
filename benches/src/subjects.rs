//! The subjects of the comparison and the cases each one supports.
//!
//! Every subject builds, for a case, either a timed [`Batch`] that owns everything it made
//! (dropping it removes the segment and lock), or a contended [`Pair`], or says why it does
//! not support the case.

use std::hint::black_box;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use neocortex::{Cortex, CortexSync, ShmSafe};
use neocortex::{
    Mutex as NcMutex, RwSemaphore as NcRwSemaphore, Semaphore as NcSemaphore,
    SysvSemaphore as NcSysvSemaphore,
};
use raw_sync::locks::{LockImpl, LockInit, Mutex as RawMutex};
use seed_neocortex::{Cortex as SeedCortex, Semaphore as SeedSemaphore};
use shared_memory::{Shmem, ShmemConf};

use crate::cleanup::{key_for, posix_name_for, Leftover};
use crate::contended::{Pair, WRITER};
use crate::floors::{
    attach_id, create_sem_set, detach_addr, futex_lock, futex_unlock, remove_segment,
    remove_sem_set, RobustMutex, SemUndo, SysvSegment,
};
use crate::measure::Batch;

/// Bytes of the value of `inplace_write_64m`.
pub const BIG: usize = 64 << 20;

/// Bytes of the value of `uncontended_write_4k` and `contended_4k`.
pub const PAGE: usize = 4096;

/// Where floors put their value in the segment: after a cache line for the lock.
const VALUE_OFFSET: usize = 64;

/// The measured cases, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    /// ns per `read()` of a `u64`, uncontended.
    ReadU64,
    /// ns per `write()` of a 4 KiB value, uncontended.
    Write4k,
    /// Two processes, one writing and one reading an 8 B value: total ops/s.
    Contended8b,
    /// Two processes, one writing and one reading a 4 KiB value: total ops/s.
    Contended4k,
    /// ns to create a typed segment with its lock and drop (remove) it.
    CreateDrop,
    /// ns to attach to an existing segment and drop (detach) the handle.
    AttachDetach,
    /// ns to fill a 64 MiB value in place through a guard (memcpy for the floor).
    Inplace64m,
}

impl Case {
    /// Every case, in report order.
    pub const ALL: [Case; 7] = [
        Case::ReadU64,
        Case::Write4k,
        Case::Contended8b,
        Case::Contended4k,
        Case::CreateDrop,
        Case::AttachDetach,
        Case::Inplace64m,
    ];

    /// The case's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Case::ReadU64 => "uncontended_read_u64",
            Case::Write4k => "uncontended_write_4k",
            Case::Contended8b => "contended_8b",
            Case::Contended4k => "contended_4k",
            Case::CreateDrop => "create_drop",
            Case::AttachDetach => "attach_detach",
            Case::Inplace64m => "inplace_write_64m",
        }
    }

    /// What one operation is, for the table's heading.
    pub fn describe(self) -> &'static str {
        match self {
            Case::ReadU64 => "time per `read()` of a `u64`, one process, uncontended",
            Case::Write4k => "time per `write()` of a 4 KiB value, one process, uncontended",
            Case::Contended8b => {
                "two processes on two cores, one `write()`s and one `read()`s an 8 B value \
                 flat out: total ops/s (std-mutex: two threads)"
            }
            Case::Contended4k => {
                "two processes on two cores, one `write()`s and one `read()`s a 4 KiB value \
                 flat out: total ops/s (std-mutex: two threads)"
            }
            Case::CreateDrop => {
                "time to create a `u64` segment with its lock, then drop (remove) it"
            }
            Case::AttachDetach => {
                "time to attach to an existing `u64` segment, then drop (detach) the handle"
            }
            Case::Inplace64m => {
                "time to copy 64 MiB into the value in place through a guard (libc-memcpy: \
                 memcpy into a SysV segment)"
            }
        }
    }

    /// Whether the case measures throughput (ops/s, higher is better) rather than time.
    pub fn is_throughput(self) -> bool {
        matches!(self, Case::Contended8b | Case::Contended4k)
    }

    /// Looks a case up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The subjects, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// `Cortex<T, neocortex::Mutex>`: another name of `Semaphore`.
    NcMutex,
    /// `Cortex<T, neocortex::Semaphore>`: the futex lock with kernel-backed liveness.
    NcSemaphore,
    /// `Cortex<T, neocortex::SysvSemaphore>`: the SysV semaphore lock.
    NcSysvSemaphore,
    /// `Cortex<T, neocortex::RwSemaphore>`: SysV reader-writer semaphores.
    NcRwSemaphore,
    /// The seed crate, `neocortex` 3.0.3 from crates.io, with its POSIX semaphore lock.
    Seed,
    /// `shared_memory` 0.12 with a `raw_sync` 0.1 `Mutex` in the mapping.
    SharedMemory,
    /// `std::sync::Mutex`, in-process: the floor.
    StdMutex,
    /// A SysV semaphore with `SEM_UNDO` around the access.
    SemopUndo,
    /// A futex mutex (Drepper's mutex 3) in a SysV segment.
    Futex,
    /// A robust process-shared pthread mutex in a SysV segment.
    PthreadRobust,
    /// No lock: a load, or `memcpy` into a SysV segment.
    Memcpy,
    /// `shmget`+`shmat`+`shmdt`+`IPC_RMID` plus `semget`+`SETVAL`+`IPC_RMID`.
    ShmSemCycle,
}

impl Subject {
    /// Every subject, in report order.
    pub const ALL: [Subject; 12] = [
        Subject::NcMutex,
        Subject::NcSemaphore,
        Subject::NcSysvSemaphore,
        Subject::NcRwSemaphore,
        Subject::Seed,
        Subject::SharedMemory,
        Subject::StdMutex,
        Subject::SemopUndo,
        Subject::Futex,
        Subject::PthreadRobust,
        Subject::Memcpy,
        Subject::ShmSemCycle,
    ];

    /// The subject's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Subject::NcMutex => "neocortex-mutex",
            Subject::NcSemaphore => "neocortex-semaphore",
            Subject::NcSysvSemaphore => "neocortex-sysvsemaphore",
            Subject::NcRwSemaphore => "neocortex-rwsemaphore",
            Subject::Seed => "seed-neocortex-3.0.3",
            Subject::SharedMemory => "shared_memory+raw_sync",
            Subject::StdMutex => "std-mutex",
            Subject::SemopUndo => "libc-semop-undo",
            Subject::Futex => "libc-futex",
            Subject::PthreadRobust => "pthread-robust",
            Subject::Memcpy => "libc-memcpy",
            Subject::ShmSemCycle => "libc-shm-sem-cycle",
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
                | Subject::Seed
                | Subject::SharedMemory
        )
    }

    /// Looks a subject up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Builds what the subject runs for `case`.
    ///
    /// # Errors
    ///
    /// A message saying why the setup (creating the segment or lock) failed.
    pub fn setup(self, case: Case) -> Result<Setup, String> {
        match self {
            Subject::NcMutex => neocortex_setup::<NcMutex>(case),
            Subject::NcSemaphore => neocortex_setup::<NcSemaphore>(case),
            Subject::NcSysvSemaphore => neocortex_setup::<NcSysvSemaphore>(case),
            Subject::NcRwSemaphore => neocortex_setup::<NcRwSemaphore>(case),
            Subject::Seed => seed_setup(case),
            Subject::SharedMemory => shared_memory_setup(case),
            Subject::StdMutex => std_setup(case),
            Subject::SemopUndo => semop_setup(case),
            Subject::Futex => futex_setup(case),
            Subject::PthreadRobust => robust_setup(case),
            Subject::Memcpy => memcpy_setup(case),
            Subject::ShmSemCycle => cycle_setup(case),
        }
    }
}

/// What a subject runs for a case.
pub enum Setup {
    /// A timed batch of operations (owning its segment and lock).
    Timed(Batch<'static>),
    /// A timed batch, and the same work done with bare `libc` on the same segment, to be
    /// timed interleaved with it (the "same segment" floor of `inplace_write_64m`).
    TimedWithFloor(Batch<'static>, Batch<'static>),
    /// Two forked processes.
    Processes(Box<dyn Pair>),
    /// Two threads of this process.
    Threads(Box<dyn Pair + Sync>),
    /// The subject does not support the case, and why.
    Unsupported(&'static str),
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setup::Timed(_) => f.write_str("Timed(..)"),
            Setup::TimedWithFloor(..) => f.write_str("TimedWithFloor(..)"),
            Setup::Processes(_) => f.write_str("Processes(..)"),
            Setup::Threads(_) => f.write_str("Threads(..)"),
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

/// The 64 MiB source of `inplace_write_64m`, one for all subjects (so the placement of its
/// pages does not favour one): non-zero, so its pages are real memory, not the zero page.
fn big_source() -> &'static [u8] {
    static SOURCE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| (0..BIG).map(|i| (i % 251) as u8).collect())
}

/// The writer or reader loop of a contended case over `write`/`read` closures.
fn side<T: Payload>(
    role: usize,
    write: impl Fn(T) + 'static,
    read: impl Fn() -> T + 'static,
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

fn show(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn show_debug(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

// ---------------------------------------------------------------------------------------
// neocortex

/// Attaches to the neocortex segment on `key` as a `Cortex<T, L>` and removes it with its
/// lock; whether there was one. Used by the sweep.
pub fn remove_cortex<T: ShmSafe, L: CortexSync>(key: i32) -> bool {
    match Cortex::<T, L>::attach(key) {
        Ok(c) => {
            if let Err(e) = c.remove() {
                eprintln!("compare: removing the segment on key {key:#x} failed: {e}");
            }
            true
        }
        Err(_) => false,
    }
}

fn neocortex_key<T: ShmSafe, L: CortexSync>() -> i32 {
    key_for(|key| Leftover::Cortex {
        key,
        remove: remove_cortex::<T, L>,
    })
}

/// Creates a `Cortex<T, L>` holding `value` on a fresh key that the [sweep](crate::cleanup::sweep)
/// knows about.
///
/// # Errors
///
/// The creation error, as text.
pub fn new_cortex<T: ShmSafe, L: CortexSync>(value: T) -> Result<Cortex<T, L>, String> {
    Cortex::<T, L>::new(neocortex_key::<T, L>(), value, None).map_err(show)
}

/// Creates a seed-crate segment holding `value` on a fresh key that the
/// [sweep](crate::cleanup::sweep) knows about.
///
/// # Errors
///
/// The creation error, as text.
pub fn new_seed<T>(value: T) -> Result<SeedCortex<T, SeedSemaphore>, String> {
    seed_new(seed_key(), value)
}

/// The neocortex subject of a contended case: the owner here, workers attach by key.
struct NeocortexPair<T: ShmSafe, L: CortexSync> {
    key: i32,
    _owner: Cortex<T, L>,
}

impl<T: ShmSafe + Payload, L: CortexSync> NeocortexPair<T, L> {
    fn new() -> Result<Self, String> {
        let key = neocortex_key::<T, L>();
        let owner = Cortex::<T, L>::new(key, T::initial(), None).map_err(show)?;
        Ok(Self { key, _owner: owner })
    }
}

impl<T: ShmSafe + Payload, L: CortexSync> Pair for NeocortexPair<T, L> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let c = std::rc::Rc::new(Cortex::<T, L>::attach(self.key).map_err(show)?);
        let r = c.clone();
        Ok(side::<T>(
            role,
            move |v| c.write(v).expect("neocortex write"),
            move || r.read().expect("neocortex read"),
        ))
    }
}

fn neocortex_setup<L: CortexSync<Access = neocortex::InPlace>>(
    case: Case,
) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let key = neocortex_key::<u64, L>();
            let c = Cortex::<u64, L>::new(key, 7, None).map_err(show)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read().expect("neocortex read"));
                }
            })
        }
        Case::Write4k => {
            let key = neocortex_key::<[u8; PAGE], L>();
            let c = Cortex::<[u8; PAGE], L>::new_zeroed(key, None).map_err(show)?;
            let v = <[u8; PAGE]>::initial();
            timed(move |n| {
                for _ in 0..n {
                    c.write(black_box(v)).expect("neocortex write");
                }
            })
        }
        Case::Contended8b => Ok(Setup::Processes(Box::new(NeocortexPair::<u64, L>::new()?))),
        Case::Contended4k => Ok(Setup::Processes(Box::new(
            NeocortexPair::<[u8; PAGE], L>::new()?,
        ))),
        Case::CreateDrop => {
            let key = neocortex_key::<u64, L>();
            timed(move |n| {
                for _ in 0..n {
                    drop(black_box(
                        Cortex::<u64, L>::new(key, 7, None).expect("neocortex create"),
                    ));
                }
            })
        }
        Case::AttachDetach => {
            let key = neocortex_key::<u64, L>();
            let owner = Cortex::<u64, L>::new(key, 7, None).map_err(show)?;
            timed(move |n| {
                let _owner = &owner;
                for _ in 0..n {
                    drop(black_box(
                        Cortex::<u64, L>::attach(key).expect("neocortex attach"),
                    ));
                }
            })
        }
        Case::Inplace64m => {
            let key = neocortex_key::<[u8; BIG], L>();
            let c = Cortex::<[u8; BIG], L>::new_zeroed(key, None).map_err(show)?;
            let src = big_source();
            // The value's address, for the floor: memcpy into the very same bytes.
            let value = c.lock().map_err(show)?.as_mut_ptr();
            let c = std::rc::Rc::new(c);
            let keep = c.clone();
            let guarded: Batch<'static> = Box::new(move |n| {
                for _ in 0..n {
                    let mut guard = c.lock().expect("neocortex lock");
                    guard.copy_from_slice(black_box(src));
                }
            });
            let floor: Batch<'static> = Box::new(move |n| {
                let _mapping = &keep;
                for _ in 0..n {
                    // SAFETY: `value` points to the BIG bytes of the value in the segment,
                    // which stays attached while `keep` lives; only this thread of this
                    // process uses the segment, and never during a guard's lifetime (the
                    // harness runs the two batches one after the other).
                    unsafe { libc::memcpy(value.cast(), black_box(src.as_ptr()).cast(), BIG) };
                }
            });
            Ok(Setup::TimedWithFloor(guarded, floor))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The seed crate, neocortex 3.0.3

fn seed_key() -> i32 {
    key_for(Leftover::Seed)
}

fn seed_new<T>(key: i32, value: T) -> Result<SeedCortex<T, SeedSemaphore>, String> {
    SeedCortex::<T, SeedSemaphore>::new(Some(key), value, false, None).map_err(show)
}

struct SeedPair<T> {
    key: i32,
    _owner: SeedCortex<T, SeedSemaphore>,
}

impl<T: Payload> Pair for SeedPair<T> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let c = std::rc::Rc::new(SeedCortex::<T, SeedSemaphore>::attach(self.key).map_err(show)?);
        let r = c.clone();
        Ok(side::<T>(
            role,
            move |v| c.write(v).expect("seed write"),
            move || r.read().expect("seed read"),
        ))
    }
}

fn seed_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let c = seed_new(seed_key(), 7u64)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read().expect("seed read"));
                }
            })
        }
        Case::Write4k => {
            let v = <[u8; PAGE]>::initial();
            let c = seed_new(seed_key(), v)?;
            timed(move |n| {
                for _ in 0..n {
                    c.write(black_box(v)).expect("seed write");
                }
            })
        }
        Case::Contended8b => {
            let key = seed_key();
            Ok(Setup::Processes(Box::new(SeedPair {
                key,
                _owner: seed_new(key, u64::initial())?,
            })))
        }
        Case::Contended4k => {
            let key = seed_key();
            Ok(Setup::Processes(Box::new(SeedPair {
                key,
                _owner: seed_new(key, <[u8; PAGE]>::initial())?,
            })))
        }
        Case::CreateDrop => {
            let key = seed_key();
            timed(move |n| {
                for _ in 0..n {
                    drop(black_box(seed_new(key, 7u64).expect("seed create")));
                }
            })
        }
        Case::AttachDetach => {
            let key = seed_key();
            let owner = seed_new(key, 7u64)?;
            timed(move |n| {
                let _owner = &owner;
                for _ in 0..n {
                    drop(black_box(
                        SeedCortex::<u64, SeedSemaphore>::attach(key).expect("seed attach"),
                    ));
                }
            })
        }
        Case::Inplace64m => Ok(Setup::Unsupported(
            "no guard or in-place access: `write()` takes the 64 MiB value by value, \
             through the stack",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// shared_memory + raw_sync

/// A `T` in a `shared_memory` mapping, guarded by a `raw_sync` Mutex at its start.
struct ShmRaw<T> {
    // Declared first so it is dropped before the mapping it points into.
    lock: Box<dyn LockImpl>,
    _shmem: Shmem,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> ShmRaw<T> {
    /// Bytes before the value: the mutex, rounded up to a cache line.
    fn data_offset() -> usize {
        RawMutex::size_of(None).next_multiple_of(64)
    }

    fn data_ptr(shmem: &Shmem) -> *mut u8 {
        shmem.as_ptr().wrapping_add(Self::data_offset())
    }

    fn create(name: &str, value: T) -> Result<Self, String> {
        let shmem = ShmemConf::new()
            .os_id(name)
            .size(Self::data_offset() + size_of::<T>())
            .create()
            .map_err(show)?;
        let data = Self::data_ptr(&shmem);
        // SAFETY: the fresh mapping is page-aligned and large enough for the mutex (its
        // size_of) before `data`; nobody else uses it yet.
        let (lock, _) = unsafe { RawMutex::new(shmem.as_ptr(), data) }.map_err(show_debug)?;
        // SAFETY: `data` is inside the mapping, 64-byte aligned, with size_of::<T>() bytes.
        unsafe { data.cast::<T>().write(value) };
        Ok(Self {
            lock,
            _shmem: shmem,
            _t: std::marker::PhantomData,
        })
    }

    fn open(name: &str) -> Result<Self, String> {
        let shmem = ShmemConf::new().os_id(name).open().map_err(show)?;
        if shmem.len() < Self::data_offset() + size_of::<T>() {
            return Err(format!("{name} is too small"));
        }
        let data = Self::data_ptr(&shmem);
        // SAFETY: the mapping was made by `create` for the same T: the mutex is initialised
        // at its start and `data` is where create put the value.
        let (lock, _) =
            unsafe { RawMutex::from_existing(shmem.as_ptr(), data) }.map_err(show_debug)?;
        Ok(Self {
            lock,
            _shmem: shmem,
            _t: std::marker::PhantomData,
        })
    }

    fn read(&self) -> T {
        let guard = self.lock.lock().expect("raw_sync lock");
        // SAFETY: the guard's pointer is the value's address (inside the live mapping,
        // aligned for T) and the mutex is held.
        unsafe { guard.cast::<T>().read() }
    }

    fn write(&self, value: T) {
        let guard = self.lock.lock().expect("raw_sync lock");
        // SAFETY: as in `read`; the mutex excludes every other user.
        unsafe { guard.cast::<T>().write(value) };
    }
}

struct ShmRawPair<T> {
    name: String,
    _owner: ShmRaw<T>,
}

impl<T: Payload> Pair for ShmRawPair<T> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let c = std::rc::Rc::new(ShmRaw::<T>::open(&self.name)?);
        let r = c.clone();
        Ok(side::<T>(role, move |v| c.write(v), move || r.read()))
    }
}

fn shared_memory_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let c = ShmRaw::create(&posix_name_for("read"), 7u64)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read());
                }
            })
        }
        Case::Write4k => {
            let v = <[u8; PAGE]>::initial();
            let c = ShmRaw::create(&posix_name_for("write"), v)?;
            timed(move |n| {
                for _ in 0..n {
                    c.write(black_box(v));
                }
            })
        }
        Case::Contended8b => {
            let name = posix_name_for("c8");
            let owner = ShmRaw::create(&name, u64::initial())?;
            Ok(Setup::Processes(Box::new(ShmRawPair {
                name,
                _owner: owner,
            })))
        }
        Case::Contended4k => {
            let name = posix_name_for("c4k");
            let owner = ShmRaw::create(&name, <[u8; PAGE]>::initial())?;
            Ok(Setup::Processes(Box::new(ShmRawPair {
                name,
                _owner: owner,
            })))
        }
        Case::CreateDrop => {
            let name = posix_name_for("cd");
            timed(move |n| {
                for _ in 0..n {
                    drop(black_box(
                        ShmRaw::create(&name, 7u64).expect("shared_memory create"),
                    ));
                }
            })
        }
        Case::AttachDetach => {
            let name = posix_name_for("ad");
            let owner = ShmRaw::create(&name, 7u64)?;
            timed(move |n| {
                let _owner = &owner;
                for _ in 0..n {
                    drop(black_box(
                        ShmRaw::<u64>::open(&name).expect("shared_memory open"),
                    ));
                }
            })
        }
        Case::Inplace64m => {
            let name = posix_name_for("big");
            let shmem = ShmemConf::new()
                .os_id(&name)
                .size(ShmRaw::<u8>::data_offset() + BIG)
                .create()
                .map_err(show)?;
            let data = ShmRaw::<u8>::data_ptr(&shmem);
            // SAFETY: the fresh mapping is page-aligned with room for the mutex before `data`.
            let (lock, _) = unsafe { RawMutex::new(shmem.as_ptr(), data) }.map_err(show_debug)?;
            let src = big_source();
            timed(move |n| {
                let _mapping = &shmem;
                for _ in 0..n {
                    let guard = lock.lock().expect("raw_sync lock");
                    // SAFETY: the guard's pointer has BIG bytes inside the live mapping, the
                    // mutex is held, and `src` is a separate BIG-byte buffer.
                    unsafe { std::ptr::copy_nonoverlapping(black_box(src.as_ptr()), *guard, BIG) };
                }
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// std::sync::Mutex (in-process)

struct StdPair<T> {
    m: std::sync::Mutex<T>,
}

impl<T: Payload> Pair for StdPair<T> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let m = &self.m;
        if role == WRITER {
            let mut v = T::initial();
            let mut i = 0u64;
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    i += 1;
                    v.stamp(i);
                    *m.lock().expect("std mutex") = black_box(v);
                }
            }))
        } else {
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    black_box(*m.lock().expect("std mutex"));
                }
            }))
        }
    }
}

fn std_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let m = std::sync::Mutex::new(7u64);
            timed(move |n| {
                for _ in 0..n {
                    black_box(*m.lock().expect("std mutex"));
                }
            })
        }
        Case::Write4k => {
            let m = Box::new(std::sync::Mutex::new([0u8; PAGE]));
            let v = <[u8; PAGE]>::initial();
            timed(move |n| {
                for _ in 0..n {
                    *m.lock().expect("std mutex") = black_box(v);
                }
            })
        }
        Case::Contended8b => Ok(Setup::Threads(Box::new(StdPair {
            m: std::sync::Mutex::new(u64::initial()),
        }))),
        Case::Contended4k => Ok(Setup::Threads(Box::new(StdPair {
            m: std::sync::Mutex::new(<[u8; PAGE]>::initial()),
        }))),
        Case::CreateDrop | Case::AttachDetach => Ok(Setup::Unsupported(
            "in-process: there is no segment to create or attach",
        )),
        Case::Inplace64m => {
            let m = std::sync::Mutex::new(vec![0u8; BIG]);
            let src = big_source();
            timed(move |n| {
                for _ in 0..n {
                    m.lock().expect("std mutex").copy_from_slice(black_box(src));
                }
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bare libc floors: a value in a SysV segment behind a lock.

/// A floor's lock.
trait FloorLock {
    fn lock(&self);
    fn unlock(&self);
}

impl FloorLock for SemUndo {
    fn lock(&self) {
        SemUndo::lock(self).expect("semop lock");
    }
    fn unlock(&self) {
        SemUndo::unlock(self).expect("semop unlock");
    }
}

/// The futex word at the start of a segment.
struct FutexWord(NonNull<AtomicU32>);

impl FutexWord {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the word is at the page-aligned start of a live segment (the FloorCell
        // that owns this lock owns the segment) and is only accessed atomically.
        unsafe { self.0.as_ref() }
    }
}

impl FloorLock for FutexWord {
    fn lock(&self) {
        futex_lock(self.word());
    }
    fn unlock(&self) {
        futex_unlock(self.word());
    }
}

/// A robust pthread mutex at the start of a segment, destroyed on drop.
struct Robust(RobustMutex);

impl FloorLock for Robust {
    fn lock(&self) {
        self.0.lock().expect("pthread_mutex_lock");
    }
    fn unlock(&self) {
        self.0.unlock().expect("pthread_mutex_unlock");
    }
}

impl Drop for Robust {
    fn drop(&mut self) {
        // SAFETY: the owning FloorCell is being dropped in the process that made it, after
        // every worker exited: nobody holds or uses the mutex.
        unsafe { self.0.destroy() };
    }
}

/// A `T` at [`VALUE_OFFSET`] in a SysV segment, guarded by `K`. Forked workers use the
/// mapping they inherit.
struct FloorCell<T, K> {
    // Declared first: the lock may live in the segment, so it goes before the segment.
    lock: K,
    value: NonNull<T>,
    _seg: SysvSegment,
}

impl<T: Copy, K: FloorLock> FloorCell<T, K> {
    fn new(
        value: T,
        make_lock: impl FnOnce(&SysvSegment, i32) -> io::Result<K>,
    ) -> Result<Self, String> {
        let key = key_for(Leftover::RawKey);
        let seg = SysvSegment::create(key, VALUE_OFFSET + size_of::<T>()).map_err(show)?;
        let value_ptr = NonNull::new(seg.as_ptr().wrapping_add(VALUE_OFFSET).cast::<T>())
            .ok_or("null segment")?;
        // SAFETY: the offset is inside the fresh segment and 64-byte aligned (>= align of T).
        unsafe { value_ptr.write(value) };
        let lock = make_lock(&seg, key).map_err(show)?;
        Ok(Self {
            lock,
            value: value_ptr,
            _seg: seg,
        })
    }

    fn read(&self) -> T {
        self.lock.lock();
        // SAFETY: the value is inside the live segment and the lock is held.
        let v = unsafe { self.value.read() };
        self.lock.unlock();
        v
    }

    fn write(&self, v: T) {
        self.lock.lock();
        // SAFETY: as in `read`.
        unsafe { self.value.write(v) };
        self.lock.unlock();
    }
}

impl<T: Payload, K: FloorLock> Pair for FloorCell<T, K> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        if role == WRITER {
            let mut v = T::initial();
            let mut i = 0u64;
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    i += 1;
                    v.stamp(i);
                    self.write(black_box(v));
                }
            }))
        } else {
            Ok(Box::new(move |n| {
                for _ in 0..n {
                    black_box(self.read());
                }
            }))
        }
    }
}

fn semop_lock(_: &SysvSegment, key: i32) -> io::Result<SemUndo> {
    SemUndo::create(key)
}

fn futex_word(seg: &SysvSegment, _: i32) -> io::Result<FutexWord> {
    let word = NonNull::new(seg.as_ptr().cast::<AtomicU32>())
        .ok_or_else(|| io::Error::other("null segment"))?;
    // The kernel zero-fills the segment: the word starts unlocked.
    Ok(FutexWord(word))
}

fn robust_mutex(seg: &SysvSegment, _: i32) -> io::Result<Robust> {
    // SAFETY: the segment start is page-aligned, has VALUE_OFFSET (64) >= 40 bytes free for
    // the mutex, and lives as long as the FloorCell holding this lock.
    unsafe { RobustMutex::init(seg.as_ptr()) }.map(Robust)
}

/// The read, write and contended cases of a floor lock.
fn floor_setup<K: FloorLock + 'static>(
    case: Case,
    make_lock: fn(&SysvSegment, i32) -> io::Result<K>,
) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let c = FloorCell::new(7u64, make_lock)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read());
                }
            })
        }
        Case::Write4k => {
            let v = <[u8; PAGE]>::initial();
            let c = FloorCell::new(v, make_lock)?;
            timed(move |n| {
                for _ in 0..n {
                    c.write(black_box(v));
                }
            })
        }
        Case::Contended8b => Ok(Setup::Processes(Box::new(FloorCell::new(
            u64::initial(),
            make_lock,
        )?))),
        Case::Contended4k => Ok(Setup::Processes(Box::new(FloorCell::new(
            <[u8; PAGE]>::initial(),
            make_lock,
        )?))),
        Case::CreateDrop | Case::AttachDetach | Case::Inplace64m => Ok(Setup::Unsupported(
            "a lock floor; see libc-shm-sem-cycle and libc-memcpy",
        )),
    }
}

fn semop_setup(case: Case) -> Result<Setup, String> {
    floor_setup(case, semop_lock)
}

fn robust_setup(case: Case) -> Result<Setup, String> {
    floor_setup(case, robust_mutex)
}

fn futex_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::CreateDrop => {
            // The futex mutex's own creation floor: a segment and a word, no kernel lock.
            let key = key_for(Leftover::RawKey);
            timed(move |n| {
                for _ in 0..n {
                    shm_cycle(key, |base| {
                        // SAFETY: the word is at the start of the fresh, attached segment.
                        unsafe { base.cast::<u32>().write(0) };
                    })
                    .expect("futex create cycle");
                }
            })
        }
        _ => floor_setup(case, futex_word),
    }
}

/// `shmget(IPC_CREAT|IPC_EXCL)` + `shmat` + `init` + a `u64` written + `shmdt` + `IPC_RMID`.
fn shm_cycle(key: i32, init: impl FnOnce(*mut u8)) -> io::Result<()> {
    // SAFETY: shmget takes plain values.
    let id = unsafe {
        libc::shmget(
            key,
            VALUE_OFFSET + 8,
            libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
        )
    };
    if id == -1 {
        return Err(io::Error::last_os_error());
    }
    let addr = match attach_id(id) {
        Ok(a) => a,
        Err(e) => {
            remove_segment(id);
            return Err(e);
        }
    };
    init(addr.as_ptr());
    // SAFETY: the value's offset is inside the segment and 8-byte aligned.
    unsafe {
        addr.as_ptr()
            .wrapping_add(VALUE_OFFSET)
            .cast::<u64>()
            .write(7)
    };
    // SAFETY: attached above; nothing refers into the mapping any more.
    let detached = unsafe { detach_addr(addr) };
    let removed = remove_segment(id);
    detached?;
    if removed {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn memcpy_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let seg = SysvSegment::create(key_for(Leftover::RawKey), 8).map_err(show)?;
            let p = NonNull::new(seg.as_ptr().cast::<u64>()).ok_or("null segment")?;
            timed(move |n| {
                let _seg = &seg;
                for _ in 0..n {
                    // SAFETY: `p` is the aligned start of the live segment.
                    black_box(unsafe { p.as_ptr().read_volatile() });
                }
            })
        }
        Case::Write4k => {
            let seg = SysvSegment::create(key_for(Leftover::RawKey), PAGE).map_err(show)?;
            let v = <[u8; PAGE]>::initial();
            timed(move |n| {
                for _ in 0..n {
                    // SAFETY: the segment has PAGE bytes and `v` is a separate PAGE-byte value.
                    unsafe {
                        libc::memcpy(seg.as_ptr().cast(), black_box(v.as_ptr()).cast(), PAGE)
                    };
                }
            })
        }
        Case::Inplace64m => {
            let seg = SysvSegment::create(key_for(Leftover::RawKey), BIG).map_err(show)?;
            let src = big_source();
            timed(move |n| {
                for _ in 0..n {
                    // SAFETY: the segment has BIG bytes and `src` is a separate BIG-byte buffer.
                    unsafe {
                        libc::memcpy(seg.as_ptr().cast(), black_box(src.as_ptr()).cast(), BIG)
                    };
                }
            })
        }
        Case::Contended8b | Case::Contended4k | Case::CreateDrop | Case::AttachDetach => Ok(
            Setup::Unsupported("no lock and no segment lifecycle: floor of the copy only"),
        ),
    }
}

fn cycle_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::CreateDrop => {
            let key = key_for(Leftover::RawKey);
            timed(move |n| {
                for _ in 0..n {
                    shm_cycle(key, |_| ()).expect("shm cycle");
                    let id = create_sem_set(libc::IPC_PRIVATE).expect("semget");
                    assert!(remove_sem_set(id), "semctl IPC_RMID");
                }
            })
        }
        Case::AttachDetach => {
            let key = key_for(Leftover::RawKey);
            let owner = SysvSegment::create(key, VALUE_OFFSET + 8).map_err(show)?;
            timed(move |n| {
                let _owner = &owner;
                for _ in 0..n {
                    drop(black_box(
                        SysvSegment::attach(key, VALUE_OFFSET + 8).expect("shmget+shmat"),
                    ));
                }
            })
        }
        _ => Ok(Setup::Unsupported(
            "segment lifecycle floor only (create_drop, attach_detach)",
        )),
    }
}
