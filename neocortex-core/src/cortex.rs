//! [`Cortex<T, L>`]: a typed value in a shared segment, guarded by a cross-process lock.

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::time::{Duration, Instant};

use neocortex_sys::process::current_pid;
use neocortex_sys::{shm, Errno, SysError};

use crate::error::{CortexError, CortexResult, ErrorKind, Leftover};
use crate::failpoints;
use crate::guard::{CortexGuard, CortexReadGuard};
use crate::header::{Descriptor, Header, InitState, Mismatch, Name, SegmentLayout};
use crate::key::Key;
use crate::marker::{combine_tags, tag_of_name, ShmSafe};
use crate::process::{creator_alive_at, ProcessIdentity};
use crate::segment::Mapping;
use crate::sync::{CortexSync, Wait};

/// How long [`Cortex::attach`] waits for a segment that is still being initialised.
pub const ATTACH_INIT_WAIT: Duration = Duration::from_millis(500);

/// How many times a random key is drawn before giving up on collisions.
const RANDOM_KEY_TRIES: usize = 64;

/// A value of type `T` in a System V shared memory segment, shared between processes and
/// guarded by the cross-process lock `L`.
///
/// The process that creates the segment ([`new`](Self::new)) owns it: dropping that handle
/// removes the segment and its lock. Other processes [`attach`](Self::attach) and only
/// detach on drop. A forked child never removes or unlocks what its parent owns.
pub struct Cortex<T: ShmSafe, L: CortexSync> {
    key: Key,
    map: Mapping,
    lock: L,
    /// The pid allowed to remove the segment on drop, or 0 for none.
    owner_pid: i32,
    released: bool,
    _value: PhantomData<T>,
}

impl<T: ShmSafe, L: CortexSync> std::fmt::Debug for Cortex<T, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cortex")
            .field("key", &self.key)
            .field("shmid", &self.map.id)
            .field("type", &std::any::type_name::<T>())
            .field("lock", &self.lock)
            .field("owner", &self.is_owner())
            .finish()
    }
}

/// What `new` found on a taken key.
enum Occupant {
    /// Removed from under us meanwhile: try again.
    Gone,
    /// A half-made segment whose creator is dead and that nobody uses: removable.
    Debris { id: i32, creator: i32 },
    /// A ready segment whose creator is dead and that nobody uses: removable on request.
    Orphan { id: i32, creator: i32 },
    /// Anything else, with the reason it must be left alone.
    Keep(String),
}

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
    /// Where the lock state and the value are, for this `T` and `L`.
    const LAYOUT: SegmentLayout = match SegmentLayout::new(
        (size_of::<L::State>(), align_of::<L::State>()),
        (size_of::<T>(), align_of::<T>()),
    ) {
        Some(layout) => layout,
        None => panic!("the value type is too large for a shared memory segment"),
    };

    const CHECKS: () = {
        assert!(
            align_of::<T>() <= 4096,
            "ShmSafe types may be aligned to at most a page"
        );
        assert!(
            align_of::<L::State>() <= 4096,
            "lock states may be aligned to at most a page"
        );
    };

    /// The layout a segment for `T` and `L` has, and what its header must say.
    fn expected() -> Option<Descriptor> {
        let layout = SegmentLayout::new(
            (size_of::<L::State>(), align_of::<L::State>()),
            (size_of::<T>(), align_of::<T>()),
        )?;
        Some(Descriptor {
            layout,
            type_size: size_of::<T>() as u64,
            type_align: align_of::<T>() as u64,
            type_tag: T::TYPE_TAG,
            lock_tag: combine_tags(tag_of_name(L::KIND), <L::State as ShmSafe>::TYPE_TAG),
            type_name: Name::new(std::any::type_name::<T>()),
            lock_name: Name::new(L::KIND),
        })
    }

    fn check_key(key: Key) -> CortexResult<()> {
        if key.is_shareable() {
            Ok(())
        } else {
            Err(CortexError::InvalidInput {
                key,
                reason: "key 0 is IPC_PRIVATE and cannot be shared by key; pick another key \
                         or use CortexBuilder::random_key()"
                    .into(),
            })
        }
    }

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

    /// The descriptor and byte size of a segment for `T` and `L`.
    fn plan(key: Key) -> CortexResult<(Descriptor, usize)> {
        // Evaluating the constant runs the compile-time layout checks for this T and L.
        let () = Self::CHECKS;
        let too_large = || CortexError::InvalidInput {
            key,
            reason: format!(
                "`{}` is too large for a segment",
                std::any::type_name::<T>()
            ),
        };
        let expected = Self::expected().ok_or_else(too_large)?;
        let size = usize::try_from(expected.layout.total_size).map_err(|_| too_large())?;
        Ok((expected, size))
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

    /// Looks at what holds `key`, without changing it.
    fn inspect(key: Key) -> Occupant {
        let id = match shm::shmget(key.raw(), 0, 0) {
            Ok(id) => id,
            Err(e) if e.errno == Errno::ENOENT => return Occupant::Gone,
            Err(e) => return Occupant::Keep(format!("its segment cannot be opened ({e})")),
        };
        let ds = match shm::stat(id) {
            Ok(ds) => ds,
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => return Occupant::Gone,
            Err(e) => {
                return Occupant::Keep(format!("segment id {id} belongs to another user ({e})"))
            }
        };
        // Only this user's own segments are ever reclaimed: a segment made (or handed) to
        // anyone else, root included, is not ours to judge.
        let me = neocortex_sys::process::effective_uid();
        if ds.shm_perm.cuid != me || ds.shm_perm.uid != me {
            return Occupant::Keep(format!(
                "segment id {id} belongs to uid {} (created by uid {}), not to this user",
                ds.shm_perm.uid, ds.shm_perm.cuid
            ));
        }
        if ds.shm_nattch > 0 {
            return Occupant::Keep(format!(
                "segment id {id} is in use: {} process(es) attached, creator pid {}",
                ds.shm_nattch, ds.shm_cpid
            ));
        }
        if (ds.shm_segsz as u64) < size_of::<Header>() as u64 {
            return Occupant::Keep(format!(
                "segment id {id} ({} bytes) is not a neocortex segment; it was left untouched",
                ds.shm_segsz
            ));
        }
        let Ok(map) = Mapping::attach(id, ds.shm_segsz as u64) else {
            return Occupant::Keep(format!("segment id {id} cannot be attached to inspect it"));
        };
        let header = map.header();
        let verdict = match header.state() {
            // Nothing published yet: the header may be blank or half-written, so only the
            // kernel's record counts, and only a segment of exactly our size is ours to judge.
            Ok(InitState::Uninit) => {
                if ds.shm_segsz as u64 != Self::LAYOUT.total_size {
                    Occupant::Keep(format!(
                        "segment id {id} ({} bytes) holds no neocortex header; it was left \
                         untouched",
                        ds.shm_segsz
                    ))
                } else if creator_alive_at(ds.shm_cpid, ds.shm_ctime) {
                    Occupant::Keep(format!(
                        "segment id {id} is being created by pid {}",
                        ds.shm_cpid
                    ))
                } else {
                    Occupant::Debris {
                        id,
                        creator: ds.shm_cpid,
                    }
                }
            }
            Ok(state) if header.format().is_ok() => {
                let creator = header.creator();
                let ours =
                    header.descriptor().lock_tag == Self::expected().map_or(0, |d| d.lock_tag);
                if creator.pid != ds.shm_cpid {
                    Occupant::Keep(format!(
                        "segment id {id} names creator pid {} but the kernel says {} (another \
                         pid namespace, or a forged header); left untouched",
                        creator.pid, ds.shm_cpid
                    ))
                } else if creator.is_alive() {
                    Occupant::Keep(format!(
                        "segment id {id} belongs to the running process {}",
                        creator.pid
                    ))
                } else if !ours {
                    Occupant::Keep(format!(
                        "segment id {id} (creator pid {} is dead) uses another lock kind ({}); \
                         remove it with that lock type",
                        creator.pid,
                        header.descriptor().lock_name.to_text()
                    ))
                } else if state == InitState::Ready {
                    Occupant::Orphan {
                        id,
                        creator: creator.pid,
                    }
                } else {
                    Occupant::Debris {
                        id,
                        creator: creator.pid,
                    }
                }
            }
            _ => Occupant::Keep(format!(
                "segment id {id} is not a neocortex segment ({}); it was left untouched",
                header
                    .format()
                    .err()
                    .unwrap_or_else(|| "unknown state word".into())
            )),
        };
        // SAFETY: `header` is not used after this; the mapping was made above for inspection.
        if let Err(e) = unsafe { map.unmap(key, "inspect segment") } {
            tracing::error!(%e, "could not detach a segment attached for inspection");
        }
        verdict
    }

    /// Removes the segment and then the lock of a stale occupant (dead creator, none
    /// attached). A segment someone else removed meanwhile is fine: the key is free.
    fn remove_occupant(key: Key, id: i32) -> CortexResult<()> {
        let op = "reclaim stale segment";
        let gone = |e: &SysError| e.errno == Errno::EINVAL || e.errno == Errno::EIDRM;
        let ds = match shm::stat(id) {
            Ok(ds) => ds,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(CortexError::clean(op, key, e)),
        };
        let map = match Mapping::attach(id, ds.shm_segsz as u64) {
            Ok(map) => map,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(CortexError::clean(op, key, e)),
        };
        // Someone may have attached since the inspection: then it is not stale any more.
        let attached = shm::stat(id).map(|ds| ds.shm_nattch).unwrap_or(0);
        let removed = if attached > 1 {
            Err(CortexError::Occupied {
                key,
                reason: format!("segment id {id} was attached to while being reclaimed"),
            })
        } else {
            match shm::remove(id) {
                Ok(()) => Ok(()),
                Err(e) if gone(&e) => Ok(()),
                Err(e) => Err(CortexError::dirty(op, key, e, vec![Leftover::Segment(id)])),
            }
        };
        // The lock goes only with the segment, and only when the header names our lock kind.
        let mut lock = Ok(());
        let header = map.header();
        if removed.is_ok() && header.format().is_ok() {
            if let Some(expected) = Self::expected() {
                let d = header.descriptor();
                if d.lock_tag == expected.lock_tag
                    && d.layout.lock_offset == expected.layout.lock_offset
                    && expected.layout.lock_offset + size_of::<L::State>() as u64 <= map.size()
                {
                    // SAFETY: the offset is aligned for L::State (same layout as ours, checked
                    // above), inside the segment (checked against its real size) and
                    // L::State: ShmSafe is valid for every bit pattern.
                    let state = unsafe { map.at::<L::State>(expected.layout.lock_offset).as_ref() };
                    lock = L::destroy(key, state);
                }
            }
        }
        // SAFETY: last use of this mapping; `header` and `state` are not used afterwards.
        let unmapped = unsafe { map.unmap(key, op) };
        CortexError::combine([removed, lock, unmapped])
    }

    /// Removes the segment on `key` and its lock, but only if it is stale: its creator is
    /// dead (pid and start time) and no process is attached.
    ///
    /// # Errors
    ///
    /// `NotFound` when the key is free; `AlreadyExists` (the segment is in use, foreign, or
    /// made with another lock kind) with the reason; a system error from the removal.
    pub fn remove_stale(key: i32) -> CortexResult<()> {
        let key = Key(key);
        Self::check_key(key)?;
        match Self::inspect(key) {
            Occupant::Gone => Err(CortexError::clean_with_hint(
                "remove stale segment",
                key,
                ErrorKind::NotFound,
                SysError {
                    call: "shmget",
                    errno: Errno::ENOENT,
                },
                "nothing is on the key",
            )),
            Occupant::Debris { id, .. } | Occupant::Orphan { id, .. } => {
                Self::remove_occupant(key, id)
            }
            Occupant::Keep(reason) => Err(CortexError::Occupied { key, reason }),
        }
    }

    /// Attaches to the segment on `key`, checking that it holds a `T` guarded by `L`.
    ///
    /// Nothing of `T` is read before the segment's real size, its header (magic, format,
    /// state) and the layout fingerprints of `T` and `L` have been checked. A segment still
    /// being initialised is waited for up to [`ATTACH_INIT_WAIT`].
    ///
    /// # Errors
    ///
    /// `NotFound`, `PermissionDenied`, `LayoutMismatch` (another type or lock, or not a
    /// neocortex segment, or one created by another user: left untouched), `NotInitialized`,
    /// `InvalidInput` (a pid-based lock such as `Mutex`, attached from another pid namespace),
    /// or the lock's attach error.
    pub fn attach(key: i32) -> CortexResult<Self> {
        Self::attach_checked(Key(key), None)
    }

    /// [`attach`](Self::attach) to a segment created by the user `uid`.
    ///
    /// Plain `attach` trusts only segments created by this process's user or by root, so that
    /// another user who squats on the key first (with a forged header) is refused. Use this
    /// when segments are shared between users on purpose.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub fn attach_from_user(key: i32, uid: u32) -> CortexResult<Self> {
        Self::attach_checked(Key(key), Some(uid))
    }

    fn attach_checked(key: Key, trusted_uid: Option<u32>) -> CortexResult<Self> {
        Self::check_key(key)?;
        let (expected, _) = Self::plan(key)?;
        // Ask for read and write access so the kernel refuses early (the bits are checked
        // against the segment's mode for our user, group or others).
        let looked_up = failpoints::hit("attach.shmget", "shmget")
            .and_then(|()| shm::shmget(key.raw(), 0, 0o600));
        let id = looked_up.map_err(|e| {
            let hint = match e.errno {
                Errno::ENOENT => "nothing is on the key: create it first, or its owner removed it",
                Errno::EACCES => "the segment's mode does not give this user read and write access",
                _ => "",
            };
            CortexError::clean_with_hint("attach", key, ErrorKind::from_errno(e.errno), e, hint)
        })?;
        let ds = shm::stat(id).map_err(|e| CortexError::clean("attach", key, e))?;
        let creator_uid = ds.shm_perm.cuid;
        let me = neocortex_sys::process::effective_uid();
        if creator_uid != me && creator_uid != 0 && Some(creator_uid) != trusted_uid {
            return Err(CortexError::ForeignSegment {
                key,
                reason: format!(
                    "it was created by uid {creator_uid}, not by this user (uid {me}) or root; \
                     if it is shared on purpose, use Cortex::attach_from_user(key, {creator_uid})"
                ),
            });
        }
        let real_size = ds.shm_segsz as u64;
        if real_size < size_of::<Header>() as u64 {
            return Err(CortexError::ForeignSegment {
                key,
                reason: format!("it is {real_size} bytes, smaller than a neocortex header"),
            });
        }
        let map = Mapping::attach(id, real_size).map_err(|e| match e.errno {
            // Removed between shmget and shmat: as good as never there.
            Errno::EIDRM | Errno::EINVAL => CortexError::clean_with_hint(
                "attach",
                key,
                ErrorKind::NotFound,
                e,
                "the segment was removed meanwhile",
            ),
            _ => CortexError::clean("attach", key, e),
        })?;
        failpoints::reach("attach.before_validate");
        match Self::validate(key, &map, &expected, (ds.shm_cpid, ds.shm_ctime)) {
            Ok(lock) => Ok(Self {
                key,
                map,
                lock,
                owner_pid: 0,
                released: false,
                _value: PhantomData,
            }),
            Err(e) => {
                // SAFETY: nothing borrowed from `map` outlives `validate`.
                let unmapped = unsafe { map.unmap(key, "attach") };
                // The validation error is the news; a mapping left behind makes it dirty.
                Err(match unmapped {
                    Ok(()) => e,
                    Err(dirty) => {
                        tracing::error!(error = %dirty, "neocortex: a refused attach left its mapping");
                        dirty
                    }
                })
            }
        }
    }

    fn validate(
        key: Key,
        map: &Mapping,
        expected: &Descriptor,
        (kernel_creator, created_at): (i32, i64),
    ) -> CortexResult<L> {
        let header = map.header();
        let started = Instant::now();
        loop {
            match header.state() {
                Ok(InitState::Ready) => break,
                Ok(state) if state == InitState::Uninit || header.format().is_ok() => {
                    // Until the state says Initializing (release), the header's creator fields
                    // may be half-written: ask the kernel who made the segment, and when.
                    let (pid, alive) = if state == InitState::Uninit {
                        (kernel_creator, creator_alive_at(kernel_creator, created_at))
                    } else {
                        let creator = header.creator();
                        (creator.pid, creator.is_alive())
                    };
                    let waited = started.elapsed();
                    if waited >= ATTACH_INIT_WAIT || !alive {
                        let detail = if alive {
                            format!("creator pid {pid} is still running; retry later")
                        } else {
                            format!(
                                "creator pid {pid} died before finishing; the next Cortex::new \
                                 on this key reclaims it"
                            )
                        };
                        return Err(CortexError::NotInitialized {
                            key,
                            waited,
                            detail,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(_) | Err(_) => {
                    let reason = header
                        .format()
                        .err()
                        .unwrap_or_else(|| "unknown state word".into());
                    return Err(CortexError::ForeignSegment { key, reason });
                }
            }
        }
        header
            .format()
            .map_err(|reason| CortexError::ForeignSegment { key, reason })?;
        if L::PID_BASED && header.creator().pid != kernel_creator {
            return Err(CortexError::InvalidInput {
                key,
                reason: format!(
                    "the lock `{}` identifies holders by pid, and this process is in another pid \
                     namespace than the segment's creator (its pid {} is {} here); use a \
                     Semaphore lock to share between pid namespaces",
                    L::KIND,
                    header.creator().pid,
                    kernel_creator
                ),
            });
        }
        let found = header.descriptor();
        match found.check(expected, map.size()) {
            Ok(()) => {}
            Err(Mismatch::Type | Mismatch::Lock) => {
                return Err(CortexError::LayoutMismatch {
                    key,
                    expected: expected.describe(),
                    found: found.describe(),
                })
            }
            Err(Mismatch::Corrupt(why)) => {
                return Err(CortexError::ForeignSegment {
                    key,
                    reason: why.into(),
                })
            }
        }
        // SAFETY: the descriptor check above proved the lock offset equals ours, which is
        // aligned for L::State and lies inside the segment's real size.
        let state = unsafe { map.at::<L::State>(expected.layout.lock_offset).as_ref() };
        L::attach(key, state)
    }

    /// Attaches to `key` and takes ownership: this handle removes the segment on drop.
    pub(crate) fn adopt(key: Key) -> CortexResult<Self> {
        let mut c = Self::attach(key.raw())?;
        c.owner_pid = current_pid();
        Ok(c)
    }

    /// The key, as the seed crate returned it.
    pub fn key(&self) -> i32 {
        self.key.raw()
    }

    /// The segment's id, as `ipcs -m` lists it.
    pub fn segment_id(&self) -> i32 {
        self.map.id
    }

    /// Whether this handle removes the segment when dropped (in this process).
    pub fn is_owner(&self) -> bool {
        self.owner_pid != 0 && self.owner_pid == current_pid()
    }

    /// The lock handle, for lock-specific queries.
    #[inline]
    pub fn raw_lock(&self) -> &L {
        &self.lock
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        self.map.header()
    }

    #[inline]
    pub(crate) fn lock_state(&self) -> &L::State {
        let offset = Self::LAYOUT.lock_offset;
        // SAFETY: the segment was created or validated for exactly this layout, so the offset
        // is aligned for L::State and inside the mapping; L::State is ShmSafe.
        unsafe { self.map.at::<L::State>(offset).as_ref() }
    }

    #[inline]
    pub(crate) fn value_ptr(&self) -> std::ptr::NonNull<T> {
        let offset = Self::LAYOUT.data_offset;
        self.map.at::<T>(offset)
    }

    #[inline]
    pub(crate) fn key_typed(&self) -> Key {
        self.key
    }

    /// Locks exclusively, waiting as long as it takes.
    ///
    /// The guard derefs to the value in place. Check [`CortexGuard::owner_died`]: it is true
    /// when a holder died or panicked while holding the lock, so the value may be half-written.
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the lock was removed from outside, `PermissionDenied`.
    #[inline]
    pub fn lock(&self) -> CortexResult<CortexGuard<'_, T, L>> {
        CortexGuard::acquire(self, Wait::Forever)
    }

    /// Locks exclusively if the lock is free right now.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock); a held lock is `Ok(None)`.
    pub fn try_lock(&self) -> CortexResult<Option<CortexGuard<'_, T, L>>> {
        none_if_would_block(CortexGuard::acquire(self, Wait::Never))
    }

    /// Locks exclusively, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> CortexResult<CortexGuard<'_, T, L>> {
        CortexGuard::acquire(self, Wait::timeout(timeout))
    }

    /// Locks for reading. With a lock whose [`CortexSync::SHARED`] is true, several readers
    /// hold it at once; with an exclusive-only lock (`Semaphore`) this is an exclusive hold
    /// that only gives `&T`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    pub fn lock_shared(&self) -> CortexResult<CortexReadGuard<'_, T, L>> {
        CortexReadGuard::acquire(self, Wait::Forever)
    }

    /// [`lock_shared`](Self::lock_shared) if it is free for reading right now.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock); a held lock is `Ok(None)`.
    pub fn try_lock_shared(&self) -> CortexResult<Option<CortexReadGuard<'_, T, L>>> {
        none_if_would_block(CortexReadGuard::acquire(self, Wait::Never))
    }

    /// [`lock_shared`](Self::lock_shared), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as [`lock`](Self::lock).
    pub fn lock_shared_timeout(
        &self,
        timeout: Duration,
    ) -> CortexResult<CortexReadGuard<'_, T, L>> {
        CortexReadGuard::acquire(self, Wait::timeout(timeout))
    }

    /// A copy of the value, read under the shared lock.
    ///
    /// # Errors
    ///
    /// `OwnerDied` while a holder's death has left the value unrepaired (use
    /// [`lock`](Self::lock) to look at it and mark it consistent), and as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn read(&self) -> CortexResult<T>
    where
        T: Copy,
    {
        let guard = self.lock_shared()?;
        guard.refuse_if_inconsistent()?;
        Ok(*guard)
    }

    /// Replaces the value under the exclusive lock. A whole new value also repairs a value
    /// left half-written by a dead holder, so this marks it consistent.
    ///
    /// `value` passes through the stack; write large values in place with
    /// [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    pub fn write(&self, value: T) -> CortexResult<()> {
        let mut guard = self.lock()?;
        *guard = value;
        guard.mark_consistent();
        Ok(())
    }

    /// Runs `f` on the value in place under the exclusive lock and returns its result.
    ///
    /// # Errors
    ///
    /// `OwnerDied` while the value is unrepaired (see [`read`](Self::read)), and as
    /// [`lock`](Self::lock).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> CortexResult<R> {
        let mut guard = self.lock()?;
        guard.refuse_if_inconsistent()?;
        Ok(f(&mut guard))
    }

    /// Unmaps this handle and leaves the segment and its lock in place, even when this
    /// handle created them: the way to keep a segment alive past its creator. Another process
    /// can attach later, and adopt it with `CortexBuilder::force_ownership()`.
    ///
    /// # Errors
    ///
    /// `DirtySystem` when `shmdt` fails (the mapping is left).
    pub fn detach(mut self) -> CortexResult<()> {
        self.released = true;
        // SAFETY: `self` is consumed and `released` stops Drop from touching the mapping.
        unsafe { self.map.unmap(self.key, "detach") }
    }

    /// Removes the segment and its lock now, whoever created them, then unmaps this handle.
    /// Other attached processes keep their mapping until they detach, but can no longer lock.
    ///
    /// # Errors
    ///
    /// `DirtySystem` naming what could not be removed (for example `EPERM`: not the owner).
    pub fn remove(mut self) -> CortexResult<()> {
        self.released = true;
        self.remove_and_unmap("remove")
    }

    fn remove_and_unmap(&self, op: &'static str) -> CortexResult<()> {
        failpoints::reach("drop.before_remove");
        let lock = L::destroy(self.key, self.lock_state());
        let removed = failpoints::hit("drop.rmid", "shmctl(IPC_RMID)")
            .and_then(|()| shm::remove(self.map.id));
        let segment = match removed {
            Ok(()) => Ok(()),
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
                tracing::warn!(key = %self.key, shmid = self.map.id, "segment was already removed from outside");
                Ok(())
            }
            Err(e) => Err(CortexError::dirty(
                op,
                self.key,
                e,
                vec![Leftover::Segment(self.map.id)],
            )),
        };
        // SAFETY: called once, from `remove` or `drop`, after which the mapping is not used.
        let unmap = unsafe { self.map.unmap(self.key, op) };
        CortexError::combine([lock, segment, unmap])
    }
}

impl<T: ShmSafe, L: CortexSync> Drop for Cortex<T, L> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Ask the kernel, not the pid cache: a child made by a raw clone() skips the fork
        // handler that resets the cache, and must never remove its parent's segment.
        let owner = self.owner_pid != 0 && self.owner_pid == neocortex_sys::process::pid_uncached();
        let result = if owner {
            self.remove_and_unmap("drop")
        } else {
            // SAFETY: drop runs once; nothing borrowed from the mapping outlives `self`.
            unsafe { self.map.unmap(self.key, "drop") }
        };
        if let Err(e) = result {
            if e.is_dirty() {
                tracing::error!(error = %e, "neocortex: dropping a Cortex left system objects behind");
            } else {
                tracing::warn!(error = %e, "neocortex: error while dropping a Cortex");
            }
        }
    }
}

// SAFETY: a Cortex can move between threads: the mapping is process-wide, the lock handle is
// Send, and the value is only reached through the cross-process lock.
unsafe impl<T: ShmSafe, L: CortexSync> Send for Cortex<T, L> {}
// SAFETY: `&Cortex` only gives access to the value through the lock, which excludes across
// threads as well as processes (CortexSync contract), like `std::sync::Mutex<T>` with T: Send.
unsafe impl<T: ShmSafe, L: CortexSync> Sync for Cortex<T, L> {}

fn none_if_would_block<G>(r: CortexResult<G>) -> CortexResult<Option<G>> {
    match r {
        Ok(g) => Ok(Some(g)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
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
