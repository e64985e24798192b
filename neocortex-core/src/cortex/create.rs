//! Creation: the state machine that makes a segment, its lock and its value, and rolls
//! everything back when a step fails or the initialiser panics.

use std::cell::Cell;
use std::marker::PhantomData;

use neocortex_sys::process::current_pid;
use neocortex_sys::{shm, Errno, SysError};

use super::{Cortex, Occupant, RANDOM_KEY_TRIES};
use crate::error::{CortexError, CortexResult, ErrorKind, Leftover};
use crate::failpoints;
use crate::header::Descriptor;
use crate::key::Key;
use crate::marker::ShmSafe;
use crate::process::ProcessIdentity;
use crate::segment::Mapping;
use crate::sync::CortexSync;

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// Creates a segment on `key` holding `data`, with the lock `L` made from `settings`
    /// (`None` for the defaults: owner-only permissions).
    ///
    /// A half-made segment left on the key by a dead creator is removed first (with a
    /// warning); anything else on the key is an `AlreadyExists` error that says what is there.
    ///
    /// `data` passes through the stack; for large values use
    /// [`new_zeroed`](Self::new_zeroed) or [`new_with`](Self::new_with).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for key 0, `AlreadyExists`, `PermissionDenied`, `LimitReached`, or the
    /// lock's creation error; each is `CleanSystem` unless the error says what was left.
    pub fn new(key: i32, data: T, settings: Option<&L::Settings>) -> CortexResult<Self> {
        Self::new_with(key, settings, |slot| *slot = data)
    }

    /// Creates a segment on `key` whose value starts as all zero bytes, without building
    /// the value anywhere else: the kernel hands out zero-filled segments.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn new_zeroed(key: i32, settings: Option<&L::Settings>) -> CortexResult<Self> {
        Self::new_with(key, settings, |_| ())
    }

    /// Creates a segment on `key` and initialises the value in place: `init` gets the
    /// zero-filled value before any other process can see the segment as ready.
    ///
    /// If `init` panics, the segment and the lock are removed before the panic goes on.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn new_with(
        key: i32,
        settings: Option<&L::Settings>,
        init: impl FnOnce(&mut T),
    ) -> CortexResult<Self> {
        let default;
        let settings = match settings {
            Some(s) => s,
            None => {
                default = L::Settings::default();
                &default
            }
        };
        Self::create(Key(key), settings, init)
    }

    /// Creates a segment on a random key, drawing again while keys are taken.
    pub(crate) fn create_random(
        settings: &L::Settings,
        init: impl FnOnce(&mut T),
    ) -> CortexResult<Self> {
        let (expected, size) = Self::plan(Key(0))?;
        let mode = L::permission(settings).flags();
        let mut last = None;
        for _ in 0..RANDOM_KEY_TRIES {
            let key =
                Key::random().map_err(|e| CortexError::clean("draw a random key", Key(0), e))?;
            match Self::create_segment(key, size, mode) {
                Ok(id) => return Self::finish(key, id, &expected, settings, init),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CortexError::InvalidInput {
            key: Key(0),
            reason: "no free random key found".into(),
        }))
    }

    fn create(key: Key, settings: &L::Settings, init: impl FnOnce(&mut T)) -> CortexResult<Self> {
        Self::check_key(key)?;
        let (expected, size) = Self::plan(key)?;
        let id = Self::create_segment(key, size, L::permission(settings).flags())?;
        Self::finish(key, id, &expected, settings, init)
    }

    /// Attaches the fresh segment `id`, writes the header, makes the lock, initialises the
    /// value and publishes the segment; removes everything again on failure or panic.
    fn finish(
        key: Key,
        id: i32,
        expected: &Descriptor,
        settings: &L::Settings,
        init: impl FnOnce(&mut T),
    ) -> CortexResult<Self> {
        let attached = failpoints::hit("create.shmat", "shmat")
            .and_then(|()| Mapping::attach(id, expected.layout.total_size));
        let map = match attached {
            Ok(map) => map,
            Err(e) => {
                return Err(remove_after_failure(
                    "attach new segment",
                    key,
                    id,
                    e,
                    vec![],
                ))
            }
        };
        let creation = Creation::<T, L> {
            key,
            map: &map,
            lock_made: Cell::new(false),
            done: Cell::new(false),
            _p: PhantomData,
        };
        let header = map.header();
        header.begin(expected, ProcessIdentity::current());
        failpoints::reach("create.after_header");
        // SAFETY: the layout was computed for L::State, so the offset is aligned and inside
        // the fresh zero-filled segment; zero is a valid L::State (ShmSafe).
        let state = unsafe { map.at::<L::State>(expected.layout.lock_offset).as_ref() };
        let lock = failpoints::hit("create.lock", "create lock")
            .map_err(|e| CortexError::clean("create lock", key, e))
            .and_then(|()| L::create(key, state, settings))
            .map_err(|e| creation.fail(e))?;
        creation.lock_made.set(true);
        failpoints::reach("create.after_lock");
        // SAFETY: the segment is fresh and private to this process until `publish`: nobody
        // else can hold the lock or a reference to the value. The offset is aligned for T and
        // inside the segment (computed by SegmentLayout for this T), and the kernel zero-fills
        // new segments, a valid T because T: ShmSafe.
        let value = unsafe { map.at::<T>(expected.layout.data_offset).as_mut() };
        init(value);
        failpoints::reach("create.before_publish");
        header.publish();
        creation.done.set(true);
        drop(creation);
        Ok(Self {
            key,
            map,
            lock,
            owner_pid: current_pid(),
            released: false,
            _value: PhantomData,
        })
    }

    /// `shmget(IPC_CREAT | IPC_EXCL)`, reclaiming debris left by a dead creator once.
    fn create_segment(key: Key, size: usize, mode: libc::c_int) -> CortexResult<i32> {
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode;
        for _ in 0..3 {
            match failpoints::hit("create.shmget", "shmget")
                .and_then(|()| shm::shmget(key.raw(), size, flags))
            {
                Ok(id) => return Ok(id),
                Err(e) if e.errno == Errno::EEXIST => match Self::inspect(key) {
                    Occupant::Gone => continue,
                    Occupant::Debris { id, creator } => {
                        tracing::warn!(
                            %key, shmid = id, creator,
                            "removing a half-made segment whose creator died before finishing it"
                        );
                        Self::remove_occupant(key, id)?;
                    }
                    Occupant::Orphan { creator, .. } => {
                        return Err(CortexError::Occupied {
                            key,
                            reason: format!(
                                "a ready segment whose creator (pid {creator}) is dead and that \
                                 nobody is attached to; attach to it with Cortex::attach, adopt \
                                 it with CortexBuilder::force_ownership(), or remove it with \
                                 Cortex::remove_stale"
                            ),
                        })
                    }
                    Occupant::Keep(reason) => return Err(CortexError::Occupied { key, reason }),
                },
                Err(e) => {
                    let hint = match e.errno {
                        Errno::EINVAL => "the size is outside the kernel's limits (kernel.shmmax)",
                        Errno::ENOSPC => {
                            "a system limit was reached (kernel.shmmni or kernel.shmall)"
                        }
                        Errno::ENOMEM => "not enough memory for the segment",
                        _ => "",
                    };
                    return Err(CortexError::clean_with_hint(
                        "create segment",
                        key,
                        ErrorKind::from_errno(e.errno),
                        e,
                        hint,
                    ));
                }
            }
        }
        Err(CortexError::Occupied {
            key,
            reason: "the key kept being taken while retrying".into(),
        })
    }
}

/// Removes a segment we created after a later step failed; clean if that works.
fn remove_after_failure(
    op: &'static str,
    key: Key,
    id: i32,
    cause: SysError,
    mut leftovers: Vec<Leftover>,
) -> CortexError {
    match failpoints::hit("create.rollback_rmid", "shmctl(IPC_RMID)").and_then(|()| shm::remove(id))
    {
        // EINVAL/EIDRM: already removed (by a reclaimer that judged it debris): not left.
        Ok(())
        | Err(SysError {
            errno: Errno::EINVAL | Errno::EIDRM,
            ..
        }) if leftovers.is_empty() => CortexError::clean(op, key, cause),
        Ok(())
        | Err(SysError {
            errno: Errno::EINVAL | Errno::EIDRM,
            ..
        }) => CortexError::dirty(op, key, cause, leftovers),
        Err(_) => {
            leftovers.push(Leftover::Segment(id));
            CortexError::dirty(op, key, cause, leftovers)
        }
    }
}

/// A segment being created: removed again unless creation finishes (also on a panic in the
/// user's initialiser).
struct Creation<'m, T: ShmSafe, L: CortexSync> {
    key: Key,
    map: &'m Mapping,
    lock_made: Cell<bool>,
    done: Cell<bool>,
    _p: PhantomData<(T, L)>,
}

impl<T: ShmSafe, L: CortexSync> Creation<'_, T, L> {
    /// Rolls back and returns the error to report: clean if everything went, else dirty.
    fn fail(&self, cause: CortexError) -> CortexError {
        let mut all: Vec<Leftover> = cause.leftovers().to_vec();
        all.extend(self.rollback());
        match cause {
            CortexError::CleanSystem {
                op, key, source, ..
            } if !all.is_empty() => CortexError::dirty(op, key, source, all),
            other => other,
        }
    }

    /// Removes whatever was made, once; returns what could not be removed.
    fn rollback(&self) -> Vec<Leftover> {
        if self.done.replace(true) {
            return vec![];
        }
        let map = self.map;
        let mut left = vec![];
        if self.lock_made.get() {
            if let Some(d) = Cortex::<T, L>::expected() {
                // SAFETY: same layout as during creation: aligned, in bounds, ShmSafe.
                let state = unsafe { map.at::<L::State>(d.layout.lock_offset).as_ref() };
                if let Err(e) = L::destroy(self.key, state) {
                    left.extend_from_slice(e.leftovers());
                }
            }
        }
        match failpoints::hit("create.rollback_rmid", "shmctl(IPC_RMID)")
            .and_then(|()| shm::remove(map.id))
        {
            Ok(())
            | Err(SysError {
                errno: Errno::EINVAL | Errno::EIDRM,
                ..
            }) => {}
            Err(_) => left.push(Leftover::Segment(map.id)),
        }
        // SAFETY: a failed creation never hands out the mapping; this is its last use (the
        // caller returns the error right after, and the owning local is then dropped, which
        // does not unmap).
        if unsafe { map.unmap(self.key, "roll back creation") }.is_err() {
            left.push(Leftover::Mapping(map.addr()));
        }
        left
    }
}

impl<T: ShmSafe, L: CortexSync> Drop for Creation<'_, T, L> {
    fn drop(&mut self) {
        let left = self.rollback();
        if !left.is_empty() {
            tracing::error!(key = %self.key, ?left, "neocortex: rolling back a failed creation left objects behind");
        }
    }
}
