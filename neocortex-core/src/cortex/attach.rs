//! Attaching: every check a segment passes before a byte of its value is read.

use std::marker::PhantomData;
use std::mem::size_of;
use std::time::{Duration, Instant};

use neocortex_sys::process::current_pid;
use neocortex_sys::{shm, Errno};

use super::{Cortex, ATTACH_INIT_WAIT};
use crate::error::{CortexError, CortexResult, ErrorKind};
use crate::failpoints;
use crate::header::{Descriptor, Header, InitState, Mismatch};
use crate::key::Key;
use crate::marker::ShmSafe;
use crate::process::creator_alive_at;
use crate::segment::Mapping;
use crate::sync::CortexSync;

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
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
        let creator_uid = ds.cuid;
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
        let real_size = ds.size;
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
        match Self::validate(key, &map, &expected, (ds.cpid, ds.ctime)) {
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
}
