//! neocortex itself, with each lock: `Semaphore` (the futex lock), `SysvSemaphore`,
//! `RwSemaphore` and `SeqLock`.

use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use neocortex::{
    Cortex, CortexResult, CortexSync, ErrorKind, RwSemaphore, Semaphore, SeqLock, ShmSafe,
    SysvSemaphore, Value,
};

use super::{big_source, read_4k_batch, show, side, timed, Payload, Setup, BIG, PAGE, SLICE};
use crate::affinity::CorePair;
use crate::cleanup::{key_for, Leftover};
use crate::contended::Pair;
use crate::measure::Batch;
use crate::pingpong::{ping_pong, Channel, End};
use crate::takeover::{self, sleep_forever, Holdable};

/// What differs between the locks: the cases that need guards (which `SeqLock` has not).
pub trait NcLock: CortexSync + 'static {
    /// `inplace_write_64m`: 64 MiB copied in place through a guard, or why not.
    ///
    /// # Errors
    ///
    /// The creation error, as text.
    fn inplace_64m() -> Result<Setup, String>;

    /// Blocks until `c`'s lock is held, calls `got` at once, then repairs the value (a
    /// holder died) and releases.
    ///
    /// # Errors
    ///
    /// The lock's error.
    fn take_and_repair(c: &Cortex<u64, Self>, got: &dyn Fn()) -> CortexResult<()>;
}

macro_rules! guarded_lock {
    ($lock:ty) => {
        impl NcLock for $lock {
            fn inplace_64m() -> Result<Setup, String> {
                inplace_64m::<$lock>()
            }

            fn take_and_repair(c: &Cortex<u64, Self>, got: &dyn Fn()) -> CortexResult<()> {
                let mut guard = c.lock()?;
                got();
                *guard = 0;
                guard.mark_consistent();
                Ok(())
            }
        }
    };
}

guarded_lock!(Semaphore);
guarded_lock!(SysvSemaphore);
guarded_lock!(RwSemaphore);

impl NcLock for SeqLock {
    fn inplace_64m() -> Result<Setup, String> {
        Ok(Setup::Unsupported(
            "no guards: a SeqLock value is only copied (`read`/`write`), and a 64 MiB copy \
             per read is not what it is for",
        ))
    }

    fn take_and_repair(c: &Cortex<u64, Self>, got: &dyn Fn()) -> CortexResult<()> {
        // `write()` takes the writer lock (over from the dead holder) and repairs.
        c.write(0)?;
        got();
        Ok(())
    }
}

/// Attaches to the neocortex segment on `key` as a `Cortex<T, L>` and removes it with its
/// lock; whether there was one. Used by the sweep.
pub fn remove_cortex<T: ?Sized + Value, L: CortexSync>(key: i32) -> bool {
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

fn neocortex_key<T: ?Sized + Value, L: CortexSync>() -> i32 {
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
        let c = Rc::new(Cortex::<T, L>::attach(self.key).map_err(show)?);
        let r = c.clone();
        Ok(side::<T>(
            role,
            move |v| c.write(v).expect("neocortex write"),
            move || r.read().expect("neocortex read"),
        ))
    }
}

/// `inplace_write_64m` for a lock with guards.
fn inplace_64m<L: CortexSync<Access = neocortex::InPlace>>() -> Result<Setup, String> {
    let key = neocortex_key::<[u8; BIG], L>();
    let c = Cortex::<[u8; BIG], L>::new_zeroed(key, None).map_err(show)?;
    let src = big_source();
    // The value's address, for the floor: memcpy into the very same bytes.
    let value = c.lock().map_err(show)?.as_mut_ptr();
    let c = Rc::new(c);
    let keep = c.clone();
    let floor_src = src.clone();
    let guarded: Batch<'static> = Box::new(move |n| {
        for _ in 0..n {
            let mut guard = c.lock().expect("neocortex lock");
            guard.copy_from_slice(black_box(&src));
        }
    });
    let floor: Batch<'static> = Box::new(move |n| {
        let _mapping = &keep;
        for _ in 0..n {
            // SAFETY: `value` points to the BIG bytes of the value in the segment, which
            // stays attached while `keep` lives; only this thread of this process uses the
            // segment, and never during a guard's lifetime (the harness runs the two batches
            // one after the other).
            unsafe { libc::memcpy(value.cast(), black_box(floor_src.as_ptr()).cast(), BIG) };
        }
    });
    Ok(Setup::TimedWithFloor(guarded, floor))
}

/// A `u64` segment for `takeover_after_kill`: holder and waiter attach by key.
struct NcHold<L: NcLock> {
    key: i32,
    _owner: Cortex<u64, L>,
}

impl<L: NcLock> Holdable for NcHold<L> {
    fn hold(&self, held: &dyn Fn()) -> Result<(), String> {
        let c = Cortex::<u64, L>::attach(self.key).map_err(show)?;
        c.update(|_| {
            held();
            sleep_forever()
        })
        .map_err(show)
    }

    fn wait(&self, waiting: &dyn Fn(), got: &dyn Fn()) -> Result<(), String> {
        let c = Cortex::<u64, L>::attach(self.key).map_err(show)?;
        waiting();
        L::take_and_repair(&c, got).map_err(show)
    }
}

/// A `u64` segment for `notify_roundtrip`; both ends attach by key.
struct NcChannel<L: CortexSync> {
    key: i32,
    /// The version before the first ping.
    start: u64,
    _owner: Cortex<u64, L>,
}

struct NcEnd<L: CortexSync> {
    c: Cortex<u64, L>,
    seen: u64,
}

impl<L: CortexSync> End for NcEnd<L> {
    fn send(&mut self) -> Result<(), String> {
        self.c.write(self.seen).map_err(show)?;
        // The two sides alternate, so this write made the next version.
        self.seen += 1;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<bool, String> {
        match self.c.wait_for_change(self.seen, timeout) {
            Ok(v) => {
                self.seen = v;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::Timeout => Ok(false),
            Err(e) => Err(show(e)),
        }
    }
}

impl<L: CortexSync> Channel for NcChannel<L> {
    fn end(&self, _role: usize) -> Result<Box<dyn End>, String> {
        let c = Cortex::<u64, L>::attach(self.key).map_err(show)?;
        Ok(Box::new(NcEnd {
            c,
            seen: self.start,
        }))
    }
}

/// Builds what neocortex with lock `L` runs for `case`.
///
/// # Errors
///
/// A message saying why creating the segment failed.
pub fn setup<L: NcLock>(case: super::Case, cores: CorePair) -> Result<Setup, String> {
    use super::Case;
    match case {
        Case::ReadU64 => {
            let c = new_cortex::<u64, L>(7)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read().expect("neocortex read"));
                }
            })
        }
        Case::Read4k => {
            let c = new_cortex::<[u8; PAGE], L>(<[u8; PAGE]>::initial())?;
            read_4k_batch(move || c.read().expect("neocortex read"))
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
        Case::Contended8b | Case::Seqlock1w1r => {
            let pair = Box::new(NeocortexPair::<u64, L>::new()?);
            Ok(if case == Case::Seqlock1w1r {
                match L::KIND {
                    "seqlock" | "semaphore" => Setup::SoloAndPair(pair),
                    _ => Setup::Unsupported(super::SEE_CONTENDED),
                }
            } else {
                Setup::Processes(pair)
            })
        }
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
        Case::Inplace64m => L::inplace_64m(),
        Case::SliceRead1m => {
            let key = neocortex_key::<[u8], L>();
            let c = Cortex::<[u8], L>::new_slice(key, SLICE, 0x5a, None).map_err(show)?;
            let mut buf = vec![0u8; SLICE];
            timed(move |n| {
                for _ in 0..n {
                    c.read_into(black_box(&mut buf))
                        .expect("neocortex read_into");
                }
            })
        }
        Case::Takeover => {
            let key = neocortex_key::<u64, L>();
            let owner = Cortex::<u64, L>::new(key, 7, None).map_err(show)?;
            Ok(Setup::Sampled(takeover::sampled(
                NcHold { key, _owner: owner },
                cores,
            )))
        }
        Case::NotifyRoundtrip => {
            let key = neocortex_key::<u64, L>();
            let owner = Cortex::<u64, L>::new(key, 0, None).map_err(show)?;
            let start = owner.version();
            let batch = ping_pong(
                NcChannel {
                    key,
                    start,
                    _owner: owner,
                },
                cores.second,
            )?;
            Ok(Setup::Timed(batch))
        }
    }
}
