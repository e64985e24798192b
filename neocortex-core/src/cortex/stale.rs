//! Stale segments: what `new` finds on a taken key, and the removal of debris and orphans.

use std::mem::size_of;

use neocortex_sys::{shm, Errno, SysError};

use super::{Cortex, Occupant};
use crate::error::{CortexError, CortexResult, ErrorKind, Leftover};
use crate::header::{Header, InitState};
use crate::key::Key;
use crate::marker::ShmSafe;
use crate::process::creator_alive_at;
use crate::segment::Mapping;
use crate::sync::CortexSync;

impl<T: ShmSafe, L: CortexSync> Cortex<T, L> {
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
        if ds.size < size_of::<Header>() as u64 {
            return Occupant::Keep(format!(
                "segment id {id} ({} bytes) is not a neocortex segment; it was left untouched",
                ds.size
            ));
        }
        let Ok(map) = Mapping::attach(id, ds.size) else {
            return Occupant::Keep(format!("segment id {id} cannot be attached to inspect it"));
        };
        let header = map.header();
        let verdict = match header.state() {
            // Nothing published yet: the header may be blank or half-written, so only the
            // kernel's record counts, and only a segment of exactly our size is ours to judge.
            Ok(InitState::Uninit) => {
                if ds.size != Self::LAYOUT.total_size {
                    Occupant::Keep(format!(
                        "segment id {id} ({} bytes) holds no neocortex header; it was left \
                         untouched",
                        ds.size
                    ))
                } else if creator_alive_at(ds.cpid, ds.ctime) {
                    Occupant::Keep(format!(
                        "segment id {id} is being created by pid {}",
                        ds.cpid
                    ))
                } else {
                    Occupant::Debris {
                        id,
                        creator: ds.cpid,
                    }
                }
            }
            Ok(state) if header.format().is_ok() => {
                let creator = header.creator();
                let ours =
                    header.descriptor().lock_tag == Self::expected().map_or(0, |d| d.lock_tag);
                if creator.pid != ds.cpid {
                    Occupant::Keep(format!(
                        "segment id {id} names creator pid {} but the kernel says {} (another \
                         pid namespace, or a forged header); left untouched",
                        creator.pid, ds.cpid
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
    pub(super) fn remove_occupant(key: Key, id: i32) -> CortexResult<()> {
        let op = "reclaim stale segment";
        let gone = |e: &SysError| e.errno == Errno::EINVAL || e.errno == Errno::EIDRM;
        let ds = match shm::stat(id) {
            Ok(ds) => ds,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(CortexError::clean(op, key, e)),
        };
        let map = match Mapping::attach(id, ds.size) {
            Ok(map) => map,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(CortexError::clean(op, key, e)),
        };
        // Someone may have attached since the inspection: then it is not stale any more.
        let attached = shm::stat(id).map(|ds| ds.attached).unwrap_or(0);
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
}
