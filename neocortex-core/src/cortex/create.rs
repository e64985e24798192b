//! Creation: the state machine that makes a segment, its members, its lock and its value,
//! and rolls everything back when a step fails or the initialiser panics.
//!
//! The steps, each a failpoint for the fault tests:
//!
//! 1. `shmget(IPC_CREAT | IPC_EXCL)`, reclaiming a dead creator's debris once;
//! 2. `shmat`;
//! 3. the header: descriptor and creator, then state `Initializing` (release);
//! 4. the members set (its id recorded in the header before use), and the creator's token;
//! 5. the lock (`L::create`);
//! 6. the value (the initialiser);
//! 7. state `Ready` (release).

use std::cell::Cell;
use std::marker::PhantomData;

use neocortex_sys::process::current_pid;
use neocortex_sys::{shm, Errno, SysError};

use super::{Cortex, Occupant, RANDOM_KEY_TRIES};
use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs, Leftover};
use crate::failpoints;
use crate::header::Descriptor;
use crate::key::Key;
use crate::marker::{copy_bits, ShmSafe, Value};
use crate::members::{self, Membership};
use crate::process::{pid_namespace, ProcessIdentity};
use crate::segment::Mapping;
use crate::sync::CortexSync;

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// Creates a segment on `key` holding `data`, with the lock `L` made from `settings`
    /// (`None` for the defaults: owner-only permissions).
    ///
    /// A half-made segment left on the key by a dead creator is removed first (with a
    /// warning); anything else on the key is an `AlreadyExists` error that says what is there.
    ///
    /// `data` is copied into the segment once, from where the caller put it; very large
    /// values are better built in place with [`new_with`](Self::new_with) or
    /// [`new_zeroed`](Self::new_zeroed), or stored as a slice.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let cortex: Cortex<f64, Semaphore> = Cortex::new(key, 42.0, None)?;
    /// assert_eq!(cortex.read()?, 42.0);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for key 0, `AlreadyExists`, `PermissionDenied`, `LimitReached`, or the
    /// lock's creation error; each is `CleanSystem` unless the error says what was left.
    pub fn new(key: i32, data: T, settings: Option<&L::Settings>) -> CortexResult<Self> {
        // Only a reference goes down the creation layers: a large `T` is not copied again on
        // every layer's stack (ShmSafe types have no `Drop`, so `data` may simply go out of
        // scope after its bits are copied).
        Self::new_with(key, settings, |slot| copy_value(&data, slot))
    }

    /// Creates a segment on `key` whose value starts as all zero bytes, without building
    /// the value anywhere else: the kernel hands out zero-filled segments.
    ///
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let big: Cortex<[u64; 1 << 17], Semaphore> = Cortex::new_zeroed(key, None)?; // 1 MiB
    /// assert_eq!(big.lock()?[12345], 0);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
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
    /// ```
    /// use neocortex::{Cortex, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let table: Cortex<[u32; 1024], Semaphore> =
    ///     Cortex::new_with(key, None, |t: &mut [u32; 1024]| {
    ///         t.iter_mut().enumerate().for_each(|(i, v)| *v = i as u32)
    ///     })?;
    /// assert_eq!(table.lock()?[1000], 1000);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn new_with(
        key: i32,
        settings: Option<&L::Settings>,
        init: impl FnOnce(&mut T),
    ) -> CortexResult<Self> {
        with_settings::<L, _>(settings, |settings| {
            Self::create(Key(key), 1, settings, CreateOptions::default(), init)
        })
    }
}

/// Copies `data` into the zero-filled `slot` of a new segment.
pub(super) fn copy_value<T: ShmSafe>(data: &T, slot: &mut T) {
    copy_bits(std::slice::from_ref(data), std::slice::from_mut(slot));
}

/// Runs `f` with `settings`, or with the lock's defaults.
pub(super) fn with_settings<L: CortexSync, R>(
    settings: Option<&L::Settings>,
    f: impl FnOnce(&L::Settings) -> R,
) -> R {
    match settings {
        Some(s) => f(s),
        None => f(&L::Settings::default()),
    }
}

/// How to create a segment, beyond its key and value.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CreateOptions {
    /// Draw random keys (the given key is ignored).
    pub(crate) random: bool,
    /// Back the segment with huge pages.
    pub(crate) huge_pages: bool,
    /// Member slots; 0 for the default.
    pub(crate) slots: u16,
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// Creates a segment of `len` elements on `key` (or on a random key).
    pub(crate) fn create(
        key: Key,
        len: usize,
        settings: &L::Settings,
        options: CreateOptions,
        init: impl FnOnce(&mut T),
    ) -> CortexResult<Self> {
        let random = options.random;
        if !random {
            Self::check_key(key)?;
        }
        if options.slots > members::MAX_SLOTS {
            return Err(CortexError::InvalidInput {
                key: key.raw(),
                reason: format!(
                    "{} member slots asked for, at most {} are possible",
                    options.slots,
                    members::MAX_SLOTS
                ),
            });
        }
        let (expected, size) = Self::plan(key, len)?;
        let mut mode = L::permission(settings).flags();
        if options.huge_pages {
            mode |= huge_pages_flag()?;
        }
        let _span = tracing::debug_span!(
            "create",
            key = tracing::field::Empty,
            r#type = std::any::type_name::<T>(),
            len,
            lock = L::KIND
        )
        .entered();
        let (key, id) = if random {
            Self::create_random_segment(size, mode)?
        } else {
            (key, Self::create_segment(key, size, mode)?)
        };
        _span.record("key", key.raw());
        let slots = match options.slots {
            0 => members::DEFAULT_SLOTS,
            n => n,
        };
        let created = Self::finish(key, id, len, &expected, settings, slots, init)?;
        tracing::debug!(key = key.raw(), shmid = id, "created segment");
        Ok(created)
    }

    /// `shmget` on random keys until one is free.
    fn create_random_segment(size: usize, mode: libc::c_int) -> CortexResult<(Key, i32)> {
        let mut last = None;
        for _ in 0..RANDOM_KEY_TRIES {
            let key =
                Key::random().map_err(|e| CortexError::clean("draw a random key", 0, e.os()))?;
            match Self::create_segment(key, size, mode) {
                Ok(id) => return Ok((key, id)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CortexError::InvalidInput {
            key: 0,
            reason: "no free random key found".into(),
        }))
    }

    /// Attaches the fresh segment `id`, writes the header, makes the members and the lock,
    /// initialises the value and publishes the segment; removes everything again on failure
    /// or panic.
    fn finish(
        key: Key,
        id: i32,
        len: usize,
        expected: &Descriptor,
        settings: &L::Settings,
        slots: u16,
        init: impl FnOnce(&mut T),
    ) -> CortexResult<Self> {
        let attached = failpoints::hit("create.shmat", "shmat")
            .and_then(|()| Mapping::attach(id, expected.layout.total_size, false));
        let map = match attached {
            Ok(map) => map,
            Err(e) => return Err(remove_after_failure("attach new segment", key, id, e)),
        };
        let creation = Creation::<T, L> {
            key,
            map: &map,
            members: Cell::new(None),
            lock_made: Cell::new(false),
            done: Cell::new(false),
            _p: PhantomData,
        };
        let header = map.header();
        header.begin(expected, ProcessIdentity::current(), pid_namespace());
        failpoints::reach("create.after_header");

        let mode = L::permission(settings);
        let set = failpoints::hit("create.members", "semget")
            .and_then(|()| members::create_set(mode, slots))
            .map_err(|e| {
                creation.fail(CortexError::clean("create members set", key.raw(), e.os()))
            })?;
        header.record_members(set);
        creation.members.set(Some(set));
        let membership = Membership::new(set, slots);
        let token = match members::claim(set, slots, header, map.members()) {
            Ok(Some(token)) => token,
            Ok(None) => unreachable!("a fresh members set has a free slot"),
            Err(e) => {
                return Err(creation.fail(CortexError::clean(
                    "join new segment",
                    key.raw(),
                    e.os(),
                )))
            }
        };
        membership.adopt(token);
        header.set_creator_token(token.raw());

        let cx = crate::sync::LockContext::new(key.raw(), &membership, header, map.members());
        // SAFETY: the layout was computed for L::State, so the offset is aligned and inside
        // the fresh zero-filled segment; zero is a valid L::State (ShmSafe).
        let state = unsafe { map.at::<L::State>(expected.layout.lock_offset).as_ref() };
        let lock = failpoints::hit("create.lock", "create lock")
            .map_err(|e| CortexError::clean("create lock", key.raw(), e.os()))
            .and_then(|()| L::create(&cx, state, settings))
            .map_err(|e| creation.fail(e))?;
        creation.lock_made.set(true);
        failpoints::reach("create.after_lock");
        let elems = map.at::<T::Elem>(expected.layout.data_offset);
        // SAFETY: the segment is fresh and private to this process until `publish`: nobody
        // else can hold the lock or a reference to the value. The offset is aligned for the
        // element and the `len` elements lie inside the segment (SegmentLayout computed both
        // for this T), and the kernel zero-fills new segments, a valid value because the
        // element is ShmSafe.
        let value = unsafe { T::from_elems(elems, len).as_mut() };
        init(value);
        failpoints::reach("create.before_publish");
        header.publish();
        creation.done.set(true);
        drop(creation);
        Ok(Self {
            key,
            map,
            len,
            lock,
            members: membership,
            owner_pid: current_pid(),
            released: false,
            _value: PhantomData,
        })
    }

    /// `shmget(IPC_CREAT | IPC_EXCL)`, reclaiming debris left by a dead creator once.
    pub(super) fn create_segment(key: Key, size: usize, mode: libc::c_int) -> CortexResult<i32> {
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
                            key = key.raw(), shmid = id, creator,
                            "removing a half-made segment whose creator died before finishing it"
                        );
                        Self::remove_occupant(key, id)?;
                    }
                    Occupant::Orphan { creator, .. } => {
                        return Err(CortexError::Occupied {
                            key: key.raw(),
                            reason: format!(
                                "a ready segment whose creator (pid {creator}) is dead or has \
                                 detached, and that nobody is attached to; attach to it with Cortex::attach, adopt \
                                 it with CortexBuilder::force_ownership(), or remove it with \
                                 Cortex::remove_stale (or `neocortex gc --orphans`)"
                            ),
                        })
                    }
                    Occupant::Keep(reason) => {
                        return Err(CortexError::Occupied {
                            key: key.raw(),
                            reason: format!(
                                "{reason}; use another key (or CortexBuilder::random_key()), or \
                                 attach to it"
                            ),
                        })
                    }
                },
                Err(e) => {
                    let hint = match e.errno {
                        Errno::EINVAL => {
                            "the size is outside the kernel's limits (kernel.shmmax, or shmmin); \
                             `neocortex doctor` shows them"
                        }
                        Errno::ENOSPC => {
                            "a system limit was reached (kernel.shmmni or kernel.shmall); remove \
                             stale segments (`neocortex gc`) or raise the limit"
                        }
                        Errno::ENOMEM if mode & huge_pages_flag().unwrap_or(0) != 0 => {
                            "no huge pages are free: reserve them first (sysctl vm.nr_hugepages), \
                             or create the segment without huge_pages()"
                        }
                        Errno::EPERM if mode & huge_pages_flag().unwrap_or(0) != 0 => {
                            "this user may not use huge pages (vm.hugetlb_shm_group)"
                        }
                        Errno::ENOMEM => "not enough memory for the segment",
                        Errno::EACCES => "the key is taken by a segment this user may not use",
                        _ => "",
                    };
                    let kind = match e.errno {
                        Errno::ENOMEM | Errno::EPERM
                            if mode & huge_pages_flag().unwrap_or(0) != 0 =>
                        {
                            ErrorKind::LimitReached
                        }
                        errno => ErrorKind::from_raw_os_error(errno.raw()),
                    };
                    return Err(CortexError::clean_with_hint(
                        "create segment",
                        key.raw(),
                        kind,
                        e.os(),
                        hint,
                    ));
                }
            }
        }
        Err(CortexError::Occupied {
            key: key.raw(),
            reason: "the key kept being taken while retrying; use another key".into(),
        })
    }
}

/// `SHM_HUGETLB`, where the system has it.
fn huge_pages_flag() -> CortexResult<libc::c_int> {
    #[cfg(target_os = "linux")]
    {
        Ok(libc::SHM_HUGETLB)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(CortexError::InvalidInput {
            key: 0,
            reason: "huge pages for SysV segments (SHM_HUGETLB) exist only on Linux".into(),
        })
    }
}

/// Removes a segment we created after a later step failed; clean if that works.
fn remove_after_failure(op: &'static str, key: Key, id: i32, cause: SysError) -> CortexError {
    let removed = failpoints::hit("create.rollback_rmid", "shmctl(IPC_RMID)").and_then(|()| {
        // SAFETY: the segment was created by this call and never published: nobody else
        // uses it.
        unsafe { shm::remove(id) }
    });
    match removed {
        // EINVAL/EIDRM: already removed (by a reclaimer that judged it debris): not left.
        Ok(())
        | Err(SysError {
            errno: Errno::EINVAL | Errno::EIDRM,
            ..
        }) => CortexError::clean(op, key.raw(), cause.os()),
        Err(_) => CortexError::dirty(op, key.raw(), cause.os(), vec![Leftover::Segment(id)]),
    }
}

/// A segment being created: removed again unless creation finishes (also on a panic in the
/// user's initialiser).
struct Creation<'m, T: ?Sized + Value, L: CortexSync> {
    key: Key,
    map: &'m Mapping,
    members: Cell<Option<i32>>,
    lock_made: Cell<bool>,
    done: Cell<bool>,
    _p: PhantomData<(*const T, L)>,
}

impl<T: ?Sized + Value, L: CortexSync> Creation<'_, T, L> {
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
        let key = self.key.raw();
        let mut left = vec![];
        if let Some(set) = self.members.get() {
            // Only destroy uses it, and destroy needs no slot.
            let membership = Membership::new(set, 0);
            if self.lock_made.get() {
                let cx =
                    crate::sync::LockContext::new(key, &membership, map.header(), map.members());
                let lock_offset = Cortex::<T, L>::OFFSETS.lock_offset;
                // SAFETY: same layout as during creation: aligned, in bounds, ShmSafe.
                let state = unsafe { map.at::<L::State>(lock_offset).as_ref() };
                if let Err(e) = L::destroy(&cx, state) {
                    left.extend_from_slice(e.leftovers());
                }
            }
            match failpoints::hit("create.rollback_members", "semctl(IPC_RMID)")
                .and_then(|()| members::remove_set(set))
            {
                Ok(()) => map.header().forget_members(),
                Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {}
                Err(_) => left.push(Leftover::SemaphoreSet(set)),
            }
        }
        let removed = failpoints::hit("create.rollback_rmid", "shmctl(IPC_RMID)").and_then(|()| {
            // SAFETY: the segment was created by this call and never published.
            unsafe { shm::remove(map.id) }
        });
        match removed {
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
        if unsafe { map.unmap(key, "roll back creation") }.is_err() {
            left.push(Leftover::Mapping(map.addr()));
        }
        left
    }
}

impl<T: ?Sized + Value, L: CortexSync> Drop for Creation<'_, T, L> {
    fn drop(&mut self) {
        let left = self.rollback();
        if !left.is_empty() {
            tracing::error!(
                key = self.key.raw(),
                ?left,
                "rolling back a failed creation left objects behind"
            );
        }
    }
}
