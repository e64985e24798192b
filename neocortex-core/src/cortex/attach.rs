//! Attaching: every check a segment passes before a byte of its value is read.
//!
//! In order: the key; the kernel's record (who created the segment, its mode, its real
//! size); the header's magic, format and creation state (waiting a little for a creator
//! that is still at work); the layout fingerprints of the value and of the lock; for a
//! pid-based lock, the pid namespace; then the lock's own attach.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use neocortex_sys::{shm, Errno};

use super::stale::creator_alive;
use super::{Cortex, ATTACH_INIT_WAIT};
use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs};
use crate::failpoints;
use crate::header::{Descriptor, InitState, Mismatch, Published};
use crate::key::Key;
use crate::marker::Value;
use crate::members::{self, Membership};
use crate::process::{creator_alive_at, pid_namespace};
use crate::segment::{Mapping, MIN_SIZE};
use crate::sync::{CortexSync, LockContext};

/// Whom an attach trusts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Trust {
    /// A user other than this one (and root) whose segments are trusted.
    pub(crate) uid: Option<u32>,
    /// Whether a segment that everyone may write is accepted.
    pub(crate) world_writable: bool,
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// Attaches to the segment on `key`, checking that it holds a `T` guarded by `L`.
    ///
    /// Nothing of `T` is read before the segment's real size, its header (magic, format,
    /// state) and the layout fingerprints of `T` and `L` have been checked. A segment still
    /// being initialised is waited for up to [`ATTACH_INIT_WAIT`]. Only segments made by
    /// this user (or root) are trusted, and none that everyone may write; see
    /// [`attach_from_user`](Self::attach_from_user) and
    /// [`attach_world_writable`](Self::attach_world_writable) to widen that.
    ///
    /// ```
    /// use neocortex::{Cortex, ErrorKind, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let owner: Cortex<f64, Semaphore> = Cortex::new(key, 42.0, None)?;
    /// let other: Cortex<f64, Semaphore> = Cortex::attach(key)?;
    /// assert_eq!(other.read()?, 42.0);
    /// // Another type is refused before anything is read.
    /// let wrong = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    /// assert_eq!(wrong.kind(), ErrorKind::LayoutMismatch);
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound`, `PermissionDenied`, `LayoutMismatch` (another type or lock, or not a
    /// neocortex segment, or one created by another user or writable by everyone: left
    /// untouched), `NotInitialized`, `InvalidInput` (a pid-based lock attached from another
    /// pid namespace), or the lock's attach error.
    pub fn attach(key: i32) -> CortexResult<Self> {
        Self::attach_trusting(Key(key), Trust::default())
    }

    /// [`attach`](Self::attach) to a segment created by the user `uid`.
    ///
    /// Plain `attach` trusts only segments created by this process's user or by root, so that
    /// another user who squats on the key first (with a forged header) is refused. Use this
    /// when segments are shared between users on purpose: every process that can write the
    /// segment can break the others (see the crate's trust model).
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub fn attach_from_user(key: i32, uid: u32) -> CortexResult<Self> {
        Self::attach_trusting(
            Key(key),
            Trust {
                uid: Some(uid),
                world_writable: false,
            },
        )
    }

    /// [`attach`](Self::attach) to a segment that every user of the system may write
    /// (created with `ReadWriteForOthers`, `FullAccessForEveryone` or a `Custom` mode with
    /// the "others" write bit), and made by any user.
    ///
    /// Plain `attach` refuses such segments: any process on the machine could forge the lock
    /// word or write the value under a reader, which no library can make safe. Call this only
    /// when every process on the machine is trusted with the data.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub fn attach_world_writable(key: i32) -> CortexResult<Self> {
        Self::attach_trusting(
            Key(key),
            Trust {
                uid: None,
                world_writable: true,
            },
        )
    }

    /// Attaches to `key` and takes ownership: this handle removes the segment on drop.
    pub(crate) fn adopt(key: Key) -> CortexResult<Self> {
        let mut c = Self::attach_trusting(key, Trust::default())?;
        c.owner_pid = neocortex_sys::process::current_pid();
        Ok(c)
    }

    pub(crate) fn attach_trusting(key: Key, trust: Trust) -> CortexResult<Self> {
        Self::check_key(key)?;
        // The layout checks for T and L hold before any segment is looked at.
        Self::plan(key, 0)?;
        let _span = tracing::debug_span!(
            "attach",
            key = key.raw(),
            r#type = std::any::type_name::<T>(),
            lock = L::KIND
        )
        .entered();
        // Ask for read and write access so the kernel refuses early (the bits are checked
        // against the segment's mode for our user, group or others).
        let looked_up = failpoints::hit("attach.shmget", "shmget")
            .and_then(|()| shm::shmget(key.raw(), 0, 0o600));
        let id = looked_up.map_err(|e| {
            let hint = match e.errno {
                Errno::ENOENT => {
                    "nothing is on the key: create it first with Cortex::new, or its owner \
                     removed it"
                }
                Errno::EACCES => {
                    "the segment's mode does not give this user read and write access; ask its \
                     creator for a wider Permission"
                }
                _ => "",
            };
            CortexError::clean_with_hint(
                "attach",
                key.raw(),
                ErrorKind::from_raw_os_error(e.errno.raw()),
                e.os(),
                hint,
            )
        })?;
        let ds = shm::stat(id).map_err(|e| CortexError::clean("attach", key.raw(), e.os()))?;
        let creator_uid = ds.cuid;
        let me = neocortex_sys::process::effective_uid();
        let mode = u32::from(ds.mode) & 0o777;
        if !trust.world_writable
            && creator_uid != me
            && creator_uid != 0
            && Some(creator_uid) != trust.uid
        {
            return Err(CortexError::ForeignSegment {
                key: key.raw(),
                reason: format!(
                    "it was created by uid {creator_uid}, not by this user (uid {me}) or root; \
                     if it is shared on purpose, use Cortex::attach_from_user(key, {creator_uid})"
                ),
            });
        }
        if mode & 0o002 != 0 && !trust.world_writable {
            return Err(CortexError::ForeignSegment {
                key: key.raw(),
                reason: format!(
                    "its mode {mode:04o} lets every user write it, so any process on the machine \
                     could corrupt it under you; if every process is trusted with it, use \
                     Cortex::attach_world_writable({})",
                    key.raw()
                ),
            });
        }
        let real_size = ds.size;
        if real_size < MIN_SIZE {
            return Err(CortexError::ForeignSegment {
                key: key.raw(),
                reason: format!(
                    "it is not a neocortex segment ({real_size} bytes, smaller than a neocortex \
                     header: {MIN_SIZE} bytes)"
                ),
            });
        }
        let map = failpoints::hit("attach.shmat", "shmat")
            .and_then(|()| Mapping::attach(id, real_size, false))
            .map_err(|e| match e.errno {
                // Removed between shmget and shmat: as good as never there.
                Errno::EIDRM | Errno::EINVAL => CortexError::clean_with_hint(
                    "attach",
                    key.raw(),
                    ErrorKind::NotFound,
                    e.os(),
                    "the segment was removed meanwhile",
                ),
                _ => CortexError::clean("attach", key.raw(), e.os()),
            })?;
        failpoints::reach("attach.before_validate");
        match Self::validate(key, &map, (ds.cpid, ds.ctime), creator_uid) {
            Ok((len, members, lock)) => {
                tracing::debug!(key = key.raw(), shmid = id, "attached");
                Ok(Self {
                    key,
                    map,
                    len,
                    lock,
                    members,
                    owner_pid: 0,
                    released: false,
                    _value: PhantomData,
                })
            }
            Err(e) => {
                // SAFETY: nothing borrowed from `map` outlives `validate`.
                let unmapped = unsafe { map.unmap(key.raw(), "attach") };
                // The validation error is the news; a mapping left behind makes it dirty.
                Err(match unmapped {
                    Ok(()) => e,
                    Err(dirty) => {
                        tracing::error!(error = %dirty, "a refused attach left its mapping");
                        dirty
                    }
                })
            }
        }
    }

    /// Waits for the segment to be ready, then checks its header against `T` and `L`;
    /// returns its length, its membership and the lock handle.
    fn validate(
        key: Key,
        map: &Mapping,
        kernel: (i32, i64),
        segment_creator: u32,
    ) -> CortexResult<(usize, Membership, L)> {
        let header = map.header();
        let started = Instant::now();
        // The same reading of the header as the stale-segment rules and the operator's tool.
        let found = loop {
            let published = header
                .read(map.size())
                .map_err(|why| CortexError::ForeignSegment {
                    key: key.raw(),
                    reason: why.to_string(),
                })?;
            let state = match published {
                Published::Ready(found) => break found,
                Published::Blank => InitState::Uninit,
                Published::Initializing(_) => InitState::Initializing,
            };
            // Until the state says Initializing (release), the header's creator fields may be
            // half-written: ask the kernel who made the segment, and when.
            let alive = if state == InitState::Uninit {
                kernel.0 <= 0 || creator_alive_at(kernel.0, kernel.1)
            } else {
                creator_alive(header, kernel).unwrap_or(true)
            };
            let waited = started.elapsed();
            if waited >= ATTACH_INIT_WAIT || !alive {
                let detail = if alive {
                    format!(
                        "its creator (pid {}) is still running and setting it up; retry later",
                        kernel.0
                    )
                } else {
                    format!(
                        "its creator (pid {}) died before finishing; the next \
                         Cortex::new on this key reclaims it (or run `neocortex gc`)",
                        kernel.0
                    )
                };
                return Err(CortexError::NotInitialized {
                    key: key.raw(),
                    waited,
                    detail,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let len = usize::try_from(found.len).unwrap_or(usize::MAX);
        let expected: Descriptor =
            Self::expected(if T::IS_SLICE { 0 } else { 1 }).ok_or_else(|| {
                CortexError::InvalidInput {
                    key: key.raw(),
                    reason: "the value type is too large for a segment".into(),
                }
            })?;
        match found.compare(&expected) {
            Ok(()) => {}
            Err(Mismatch::Type | Mismatch::Lock) => {
                return Err(CortexError::LayoutMismatch {
                    key: key.raw(),
                    expected: describe_expected::<T>(&expected),
                    found: found.describe(),
                })
            }
            Err(Mismatch::Corrupt(why)) => {
                return Err(CortexError::ForeignSegment {
                    key: key.raw(),
                    reason: format!("its header is damaged or forged: {why}"),
                })
            }
        }
        if L::PID_BASED {
            let creator = header.creator();
            let here = pid_namespace();
            let other_namespace = if creator.pidns != 0 && here != 0 {
                creator.pidns != here
            } else {
                creator.identity.pid != kernel.0
            };
            if other_namespace {
                return Err(CortexError::InvalidInput {
                    key: key.raw(),
                    reason: format!(
                        "the lock `{}` identifies holders by pid, and this process is in \
                         another pid namespace than the segment's creator (pid {} there); use a \
                         lock that works across pid namespaces, such as Semaphore",
                        L::KIND,
                        creator.identity.pid
                    ),
                });
            }
        }
        let Some(set) = header.members_id() else {
            return Err(CortexError::ForeignSegment {
                key: key.raw(),
                reason: "a ready segment without a members set".into(),
            });
        };
        let slots =
            members::check_set(set, segment_creator).map_err(|e| e.into_error(key.raw()))?;
        let members = Membership::new(set, slots);
        let cx = LockContext::new(key.raw(), &members, header, map.members());
        // SAFETY: the descriptor check above proved the lock offset equals ours, which is
        // aligned for L::State (CHECKS) and lies inside the segment's real size.
        let state = unsafe { map.at::<L::State>(expected.layout.lock_offset).as_ref() };
        let lock = L::attach(&cx, state)?;
        Ok((len, members, lock))
    }
}

/// What the caller asked for, for a mismatch message (a slice's length is not known).
fn describe_expected<T: ?Sized + Value>(expected: &Descriptor) -> String {
    if T::IS_SLICE {
        format!(
            "`{}` (elements of {} bytes, align {}) with lock `{}`",
            expected.type_name.to_text(),
            expected.elem_size,
            expected.elem_align,
            expected.lock_name.to_text()
        )
    } else {
        expected.describe()
    }
}
