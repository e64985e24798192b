//! Stale segments: what `new` finds on a taken key, and the removal of debris and orphans.
//!
//! A segment is judged only when it is this user's own, nobody is attached, and its creator
//! is known to be gone:
//!
//! - once the creator holds its member token, "gone" is the kernel's answer (its slot in the
//!   members set lost its tag), which no pid reuse or pid namespace can fool;
//! - before that, the creator's pid and start time, and only from the creator's own pid
//!   namespace (or, for a blank header, the kernel's creator pid and creation time).
//!
//! Anything that cannot be judged is left alone.

use std::mem::size_of;

use neocortex_sys::{shm, Errno, SysError};

use super::{Cortex, Occupant};
use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs, Leftover};
use crate::header::{Header, InitState};
use crate::key::Key;
use crate::marker::Value;
use crate::members::{self, Membership, Token};
use crate::process::{creator_alive_at, pid_namespace};
use crate::segment::{Mapping, MIN_SIZE};
use crate::sync::{CortexSync, LockContext};

/// Whether the creator recorded in `header` is alive: `None` when it cannot be told.
/// `kernel` is `(shm_cpid, shm_ctime)` as the kernel reports them to this process.
pub(crate) fn creator_alive(header: &Header, kernel: (i32, i64)) -> Option<bool> {
    let creator = header.creator();
    if let (Some(set), Some(token)) = (header.members_id(), Token::from_raw(creator.token)) {
        match members::is_alive(set, token) {
            Ok(alive) => return Some(alive),
            // The set is gone (removed from outside): fall back to the pid.
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {}
            Err(_) => return None,
        }
    }
    let here = pid_namespace();
    if creator.pidns != 0 && creator.pidns == here && creator.identity.pid == kernel.0 {
        return Some(creator.identity.is_alive());
    }
    if kernel.0 > 0 {
        // The kernel's view: the creator as this namespace sees it (0 if invisible).
        return Some(creator_alive_at(kernel.0, kernel.1));
    }
    None
}

impl<T: ?Sized + Value, L: CortexSync> Cortex<T, L> {
    /// Whether a segment of `size` bytes could have been made for this `T` and `L`.
    fn could_be_ours(size: u64) -> bool {
        let data = Self::OFFSETS.data_offset;
        let elem = size_of::<T::Elem>() as u64;
        if T::IS_SLICE {
            size >= data && (elem == 0 && size == data || elem != 0 && (size - data) % elem == 0)
        } else {
            size == Self::OFFSETS.total_size
        }
    }

    /// Looks at what holds `key`, without changing it.
    pub(super) fn inspect(key: Key) -> Occupant {
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
        if ds.cuid != me || ds.uid != me {
            return Occupant::Keep(format!(
                "segment id {id} belongs to uid {} (created by uid {}), not to this user",
                ds.uid, ds.cuid
            ));
        }
        if ds.attached > 0 {
            return Occupant::Keep(format!(
                "segment id {id} is in use: {} process(es) attached, creator pid {}",
                ds.attached, ds.cpid
            ));
        }
        let size = ds.size;
        if size < MIN_SIZE {
            return Occupant::Keep(format!(
                "segment id {id} ({size} bytes) is not a neocortex segment; it was left untouched"
            ));
        }
        let Ok(map) = Mapping::attach(id, size, true) else {
            return Occupant::Keep(format!("segment id {id} cannot be attached to inspect it"));
        };
        let verdict = Self::judge(&map, id, size, (ds.cpid, ds.ctime));
        // SAFETY: nothing borrowed from `map` outlives `judge`; the mapping was made above.
        if let Err(e) = unsafe { map.unmap(key.raw(), "inspect segment") } {
            tracing::error!(%e, "could not detach a segment attached for inspection");
        }
        verdict
    }

    fn judge(map: &Mapping, id: i32, size: u64, kernel: (i32, i64)) -> Occupant {
        let header = map.header();
        match header.state() {
            // Nothing published yet: the header may be blank or half-written, so only the
            // kernel's record counts, and only a segment of a size ours could have is ours
            // to judge.
            Ok(InitState::Uninit) => {
                if !Self::could_be_ours(size) {
                    Occupant::Keep(format!(
                        "segment id {id} ({size} bytes) holds no neocortex header; it was left \
                         untouched"
                    ))
                } else if kernel.0 <= 0 || creator_alive_at(kernel.0, kernel.1) {
                    Occupant::Keep(format!(
                        "segment id {id} is being created by pid {}",
                        kernel.0
                    ))
                } else {
                    Occupant::Debris {
                        id,
                        creator: kernel.0,
                    }
                }
            }
            Ok(state) if header.format().is_ok() => {
                let creator = header.creator().identity.pid;
                let ours = header.descriptor().map(|d| d.lock_tag) == Some(Self::lock_tag());
                match creator_alive(header, kernel) {
                    None => Occupant::Keep(format!(
                        "segment id {id}: whether its creator (pid {creator}) lives cannot be \
                         told from here (another pid namespace); left untouched"
                    )),
                    Some(true) => Occupant::Keep(format!(
                        "segment id {id} belongs to the running process {creator}"
                    )),
                    Some(false) if !ours => Occupant::Keep(format!(
                        "segment id {id} (creator pid {creator} is gone) uses another lock kind \
                         ({}); remove it with that lock type",
                        header
                            .descriptor()
                            .map_or_else(|| "unknown".into(), |d| d.lock_name.to_text())
                    )),
                    Some(false) if state == InitState::Ready => Occupant::Orphan { id, creator },
                    Some(false) => Occupant::Debris { id, creator },
                }
            }
            _ => Occupant::Keep(format!(
                "segment id {id} is not a neocortex segment ({}); it was left untouched",
                header
                    .format()
                    .err()
                    .unwrap_or_else(|| "unknown state word".into())
            )),
        }
    }

    /// Removes the segment and then the lock and members of a stale occupant (creator gone,
    /// none attached). A segment someone else removed meanwhile is fine: the key is free.
    pub(super) fn remove_occupant(key: Key, id: i32) -> CortexResult<()> {
        let op = "reclaim stale segment";
        let gone = |e: &SysError| e.errno == Errno::EINVAL || e.errno == Errno::EIDRM;
        let _span = tracing::debug_span!(
            "remove stale",
            key = key.raw(),
            shmid = id,
            r#type = std::any::type_name::<T>(),
            lock = L::KIND
        )
        .entered();
        let ds = match shm::stat(id) {
            Ok(ds) => ds,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(CortexError::clean(op, key.raw(), e.os())),
        };
        let map = match Mapping::attach(id, ds.size, false) {
            Ok(map) => map,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(CortexError::clean(op, key.raw(), e.os())),
        };
        // Someone may have attached since the inspection: then it is not stale any more.
        let attached = shm::stat(id).map(|ds| ds.attached).unwrap_or(0);
        let removed = if attached > 1 {
            Err(CortexError::Occupied {
                key: key.raw(),
                reason: format!(
                    "segment id {id} was attached to while being reclaimed; it is in use again"
                ),
            })
        } else {
            // SAFETY: the segment is stale: its creator is gone and nobody but this process
            // (which only inspects it) is attached, so nobody relies on it.
            match unsafe { shm::remove(id) } {
                Ok(()) => Ok(()),
                Err(e) if gone(&e) => Ok(()),
                Err(e) => Err(CortexError::dirty(
                    op,
                    key.raw(),
                    e.os(),
                    vec![Leftover::Segment(id)],
                )),
            }
        };
        let mut lock = Ok(());
        let mut set = Ok(());
        let header = map.header();
        if removed.is_ok() && header.format().is_ok() {
            header.mark_removed();
            let members_id = header.members_id();
            // The lock goes with the segment only when the header names our lock kind at our
            // offset, inside the segment.
            let descriptor = header.descriptor();
            let lock_offset = Self::OFFSETS.lock_offset;
            if descriptor.map(|d| (d.lock_tag, d.layout.lock_offset))
                == Some((Self::lock_tag(), lock_offset))
                && lock_offset + size_of::<L::State>() as u64 <= map.size()
            {
                // Only destroy uses it, and destroy needs no slot.
                let membership = Membership::new(members_id.unwrap_or(-1), 0);
                let cx = LockContext::new(key.raw(), &membership, header, map.members());
                // SAFETY: the offset is this layout's (aligned for L::State: `CHECKS` holds,
                // it was evaluated by `plan` before any reclaim), inside the segment (checked
                // against its real size) and L::State: ShmSafe is valid for every bit pattern.
                let state = unsafe { map.at::<L::State>(lock_offset).as_ref() };
                lock = L::destroy(&cx, state);
            }
            if let Some(members_id) = members_id {
                set = match members::remove_set(members_id) {
                    Ok(()) => Ok(()),
                    Err(e) if gone(&e) => Ok(()),
                    Err(e) => Err(CortexError::dirty(
                        op,
                        key.raw(),
                        e.os(),
                        vec![Leftover::SemaphoreSet(members_id)],
                    )),
                };
            }
        }
        // SAFETY: last use of this mapping; `header` and `state` are not used afterwards.
        let unmapped = unsafe { map.unmap(key.raw(), op) };
        CortexError::combine([removed, lock, set, unmapped])
    }

    /// Removes the segment on `key` and its lock, but only if it is stale: its creator is
    /// gone and no process is attached.
    ///
    /// ```
    /// use neocortex::{Cortex, ErrorKind, Semaphore};
    ///
    /// let key = neocortex::random_key()?;
    /// let live: Cortex<u64, Semaphore> = Cortex::new(key, 1, None)?;
    /// live.detach()?; // nobody is attached, but
    /// // its creator (this process) runs: not stale, left alone.
    /// let kept = Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err();
    /// assert_eq!(kept.kind(), ErrorKind::AlreadyExists);
    /// Cortex::<u64, Semaphore>::attach(key)?.remove()?;
    /// # assert_eq!(
    /// #     Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err().kind(),
    /// #     ErrorKind::NotFound
    /// # );
    /// # Ok::<(), neocortex::CortexError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound` when the key is free; `AlreadyExists` (the segment is in use, foreign, or
    /// made with another lock kind) with the reason; a system error from the removal.
    pub fn remove_stale(key: i32) -> CortexResult<()> {
        let key = Key(key);
        Self::check_key(key)?;
        // The layout checks (alignment, size) hold before any state of L is looked at.
        Self::plan(key, 0)?;
        match Self::inspect(key) {
            Occupant::Gone => Err(CortexError::clean_with_hint(
                "remove stale segment",
                key.raw(),
                ErrorKind::NotFound,
                SysError {
                    call: "shmget",
                    errno: Errno::ENOENT,
                }
                .os(),
                "nothing is on the key",
            )),
            Occupant::Debris { id, .. } | Occupant::Orphan { id, .. } => {
                Self::remove_occupant(key, id)
            }
            Occupant::Keep(reason) => Err(CortexError::Occupied {
                key: key.raw(),
                reason,
            }),
        }
    }
}
