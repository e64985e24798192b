//! `shared_memory` 0.12 + `raw_sync` 0.1: a POSIX shared memory mapping with a `raw_sync`
//! `Mutex` at its start guarding the value, or two `raw_sync` `Event`s for the ping-pong.

use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use raw_sync::events::{Event, EventImpl, EventInit, EventState};
use raw_sync::locks::{LockImpl, LockInit, Mutex as RawMutex};
use raw_sync::Timeout;
use shared_memory::{Shmem, ShmemConf};

use super::{big_source, read_4k_batch, show, show_debug, side, timed, Case, Payload, Setup};
use super::{BIG, PAGE, SLICE};
use crate::affinity::CorePair;
use crate::cleanup::posix_name_for;
use crate::contended::Pair;
use crate::measure::Batch;
use crate::pingpong::{ping_pong, Channel, End, PINGER};

/// Bytes before the value: the mutex, rounded up to a cache line.
fn data_offset() -> usize {
    RawMutex::size_of(None).next_multiple_of(64)
}

/// `len` bytes in a `shared_memory` mapping after a `raw_sync` Mutex.
struct ShmBytes {
    // Declared first so it is dropped before the mapping it points into.
    lock: Box<dyn LockImpl>,
    _shmem: Shmem,
}

impl ShmBytes {
    fn data_ptr(shmem: &Shmem) -> *mut u8 {
        shmem.as_ptr().wrapping_add(data_offset())
    }

    /// Creates the mapping and the mutex; `init` fills the value's bytes.
    fn create(name: &str, len: usize, init: impl FnOnce(*mut u8)) -> Result<Self, String> {
        let shmem = ShmemConf::new()
            .os_id(name)
            .size(data_offset() + len)
            .create()
            .map_err(show)?;
        let data = Self::data_ptr(&shmem);
        // SAFETY: the fresh mapping is page-aligned and large enough for the mutex (its
        // size_of) before `data`; nobody else uses it yet.
        let (lock, _) = unsafe { RawMutex::new(shmem.as_ptr(), data) }.map_err(show_debug)?;
        init(data);
        Ok(Self {
            lock,
            _shmem: shmem,
        })
    }

    fn open(name: &str, len: usize) -> Result<Self, String> {
        let shmem = ShmemConf::new().os_id(name).open().map_err(show)?;
        if shmem.len() < data_offset() + len {
            return Err(format!("{name} is too small"));
        }
        let data = Self::data_ptr(&shmem);
        // SAFETY: the mapping was made by `create` with the same length: the mutex is
        // initialised at its start and `data` is where the value is.
        let (lock, _) =
            unsafe { RawMutex::from_existing(shmem.as_ptr(), data) }.map_err(show_debug)?;
        Ok(Self {
            lock,
            _shmem: shmem,
        })
    }
}

/// A `T` in a `shared_memory` mapping, guarded by a `raw_sync` Mutex at its start.
struct ShmRaw<T> {
    bytes: ShmBytes,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> ShmRaw<T> {
    fn create(name: &str, value: T) -> Result<Self, String> {
        let bytes = ShmBytes::create(name, size_of::<T>(), |data| {
            // SAFETY: `data` is inside the mapping, 64-byte aligned, with size_of::<T>() bytes.
            unsafe { data.cast::<T>().write(value) };
        })?;
        Ok(Self {
            bytes,
            _t: std::marker::PhantomData,
        })
    }

    fn open(name: &str) -> Result<Self, String> {
        Ok(Self {
            bytes: ShmBytes::open(name, size_of::<T>())?,
            _t: std::marker::PhantomData,
        })
    }

    fn read(&self) -> T {
        let guard = self.bytes.lock.lock().expect("raw_sync lock");
        // SAFETY: the guard's pointer is the value's address (inside the live mapping,
        // aligned for T) and the mutex is held.
        unsafe { guard.cast::<T>().read() }
    }

    fn write(&self, value: T) {
        let guard = self.bytes.lock.lock().expect("raw_sync lock");
        // SAFETY: as in `read`; the mutex excludes every other user.
        unsafe { guard.cast::<T>().write(value) };
    }
}

struct ShmRawPair<T> {
    name: String,
    _owner: ShmRaw<T>,
}

impl<T: Payload> ShmRawPair<T> {
    fn new(tag: &str) -> Result<Self, String> {
        let name = posix_name_for(tag);
        let owner = ShmRaw::create(&name, T::initial())?;
        Ok(Self {
            name,
            _owner: owner,
        })
    }
}

impl<T: Payload> Pair for ShmRawPair<T> {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let c = Rc::new(ShmRaw::<T>::open(&self.name)?);
        let r = c.clone();
        Ok(side::<T>(role, move |v| c.write(v), move || r.read()))
    }
}

/// Two auto-reset `raw_sync` Events in one mapping: the harness sets the first and waits
/// on the second; the child the other way round.
struct EventChannel {
    name: String,
    _owner: Shmem,
}

fn event_stride() -> usize {
    Event::size_of(None).next_multiple_of(64)
}

struct EventEnd {
    // Declared first: dropped before the mapping they point into.
    send: Box<dyn EventImpl>,
    recv: Box<dyn EventImpl>,
    _shmem: Shmem,
}

impl End for EventEnd {
    fn send(&mut self) -> Result<(), String> {
        self.send.set(EventState::Signaled).map_err(show)
    }

    fn recv(&mut self, timeout: Duration) -> Result<bool, String> {
        // raw_sync 0.1.5 adds a timeout's nanoseconds to the clock's without carrying into
        // the seconds, so a sub-second timeout is an invalid time (EINVAL, no wait at all)
        // whenever the clock is past that fraction of its second: the waiter would spin. A
        // whole number of seconds keeps the deadline valid.
        let whole = Duration::from_secs(timeout.as_secs().max(1));
        // raw_sync says only "Failed waiting for signal" for a timeout: take any failure as
        // one; the ping-pong loop gives up when the other side is gone.
        Ok(self.recv.wait(Timeout::Val(whole)).is_ok())
    }
}

impl Channel for EventChannel {
    fn end(&self, role: usize) -> Result<Box<dyn End>, String> {
        let shmem = ShmemConf::new().os_id(&self.name).open().map_err(show)?;
        let base = shmem.as_ptr();
        let stride = event_stride();
        // SAFETY: both events were initialised by `event_setup` at these offsets of this
        // mapping, which the returned end keeps alive (it is dropped after them).
        let (ping, _) = unsafe { Event::from_existing(base) }.map_err(show)?;
        // SAFETY: as above, the second event.
        let (pong, _) = unsafe { Event::from_existing(base.wrapping_add(stride)) }.map_err(show)?;
        let (send, recv) = if role == PINGER {
            (ping, pong)
        } else {
            (pong, ping)
        };
        Ok(Box::new(EventEnd {
            send,
            recv,
            _shmem: shmem,
        }))
    }
}

fn event_setup(cores: CorePair) -> Result<Setup, String> {
    let name = posix_name_for("ev");
    let stride = event_stride();
    let shmem = ShmemConf::new()
        .os_id(&name)
        .size(2 * stride)
        .create()
        .map_err(show)?;
    for i in 0..2 {
        // SAFETY: the fresh mapping has room for two events `stride` apart, page-aligned at
        // its start; nobody else uses it yet. The handles are dropped at once: the events
        // live in the mapping.
        drop(unsafe { Event::new(shmem.as_ptr().wrapping_add(i * stride), true) }.map_err(show)?);
    }
    let batch = ping_pong(
        EventChannel {
            name,
            _owner: shmem,
        },
        cores.second,
    )?;
    Ok(Setup::Timed(batch))
}

/// Builds what `shared_memory` + `raw_sync` run for `case`.
///
/// # Errors
///
/// A message saying why creating the mapping or the lock failed.
pub fn setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let c = ShmRaw::create(&posix_name_for("read"), 7u64)?;
            timed(move |n| {
                for _ in 0..n {
                    black_box(c.read());
                }
            })
        }
        Case::Read4k => {
            let c = ShmRaw::create(&posix_name_for("r4k"), <[u8; PAGE]>::initial())?;
            read_4k_batch(move || c.read())
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
        Case::Contended8b => Ok(Setup::Processes(Box::new(ShmRawPair::<u64>::new("c8")?))),
        Case::Seqlock1w1r => Ok(Setup::SoloAndPair(Box::new(ShmRawPair::<u64>::new(
            "1w1r",
        )?))),
        Case::Contended4k => Ok(Setup::Processes(Box::new(ShmRawPair::<[u8; PAGE]>::new(
            "c4k",
        )?))),
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
            let c = ShmBytes::create(&posix_name_for("big"), BIG, |_| ())?;
            let src = big_source();
            timed(move |n| {
                // The whole of `c`, not just its lock: the mapping must live as long.
                let c = &c;
                for _ in 0..n {
                    let guard = c.lock.lock().expect("raw_sync lock");
                    // SAFETY: the guard's pointer has BIG bytes inside the live mapping, the
                    // mutex is held, and `src` is a separate BIG-byte buffer.
                    unsafe { std::ptr::copy_nonoverlapping(black_box(src.as_ptr()), *guard, BIG) };
                }
            })
        }
        Case::SliceRead1m => {
            let c = ShmBytes::create(&posix_name_for("slice"), SLICE, |data| {
                // SAFETY: the value's SLICE bytes are inside the fresh mapping.
                unsafe { data.write_bytes(0x5a, SLICE) };
            })?;
            let mut buf = vec![0u8; SLICE];
            timed(move |n| {
                // The whole of `c`, not just its lock: the mapping must live as long.
                let c = &c;
                for _ in 0..n {
                    let guard = c.lock.lock().expect("raw_sync lock");
                    // SAFETY: the guard's pointer has SLICE bytes inside the live mapping, the
                    // mutex is held, and `buf` is a separate SLICE-byte buffer.
                    unsafe {
                        std::ptr::copy_nonoverlapping(*guard, black_box(buf.as_mut_ptr()), SLICE)
                    };
                }
            })
        }
        Case::Takeover => Ok(Setup::Unsupported(
            "raw_sync's Mutex is not robust: a dead holder's lock stays taken forever",
        )),
        Case::NotifyRoundtrip => event_setup(cores),
    }
}
