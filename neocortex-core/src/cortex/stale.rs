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

use neocortex_sys::shm::ShmStat;
use neocortex_sys::{shm, Errno, SysError};

use super::{Cortex, Occupant};
use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs, Leftover};
use crate::failpoints;
use crate::header::{Descriptor, Header, Published};
use crate::inspect::{LockKind, Verdict};
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

/// What the staleness rules say about a segment, and why.
#[derive(Clone, Debug)]
pub(crate) struct Judgement {
    /// The segment's id.
    pub(crate) id: i32,
    pub(crate) verdict: Verdict,
    /// For messages: what the segment is and why the verdict.
    pub(crate) reason: String,
    /// The creator's pid: the header's, or the kernel's when the header has none.
    pub(crate) creator: i32,
    /// The header's descriptor, when the header has one.
    pub(crate) descriptor: Option<Descriptor>,
}

impl Judgement {
    fn new(id: i32, verdict: Verdict, creator: i32, reason: String) -> Self {
        Self {
            id,
            verdict,
            reason,
            creator,
            descriptor: None,
        }
    }
}

/// The rules that need only the kernel's record of segment `id`: another user's segment, an
/// attached one, one too small to be ours. `None` when the header must be read to judge.
pub(crate) fn judge_kernel(id: i32, ds: &ShmStat) -> Option<Judgement> {
    // Only this user's own segments are ever reclaimed: a segment made (or handed) to
    // anyone else, root included, is not ours to judge.
    let me = neocortex_sys::process::effective_uid();
    let keep = |verdict, reason| Some(Judgement::new(id, verdict, ds.cpid, reason));
    if ds.cuid != me || ds.uid != me {
        return keep(
            Verdict::OtherUser,
            format!(
                "segment id {id} belongs to uid {} (created by uid {}), not to this user",
                ds.uid, ds.cuid
            ),
        );
    }
    if ds.attached > 0 {
        return keep(
            Verdict::InUse,
            format!(
                "segment id {id} is in use: {} process(es) attached, creator pid {}",
                ds.attached, ds.cpid
            ),
        );
    }
    if ds.size < MIN_SIZE {
        return keep(
            Verdict::Foreign,
            format!(
                "segment id {id} ({} bytes) is not a neocortex segment; it was left untouched",
                ds.size
            ),
        );
    }
    None
}

/// The rules that read the header of segment `id` (which passed [`judge_kernel`]).
/// `blank_fits`: whether a segment with a blank header (nothing published yet) and this
/// size may be judged at all; only a caller that knows which type and lock made it can
/// tell (`Cortex::new` on its key); for anyone else a blank segment is foreign.
pub(crate) fn judge_header(id: i32, ds: &ShmStat, header: &Header, blank_fits: bool) -> Judgement {
    let kernel = (ds.cpid, ds.ctime);
    let published = match header.read(ds.size) {
        Ok(published) => published,
        Err(why) => {
            return Judgement::new(
                id,
                Verdict::Foreign,
                kernel.0,
                format!("segment id {id}: {why}; it was left untouched"),
            )
        }
    };
    let Some(descriptor) = published.descriptor() else {
        // Nothing published yet: the header may be blank or half-written, so only the
        // kernel's record counts, and only a segment of a size ours could have is ours to
        // judge.
        let (verdict, reason) = if !blank_fits {
            (
                Verdict::Foreign,
                format!(
                    "segment id {id} ({} bytes) holds no neocortex header; it was left \
                     untouched",
                    ds.size
                ),
            )
        } else if kernel.0 <= 0 || creator_alive_at(kernel.0, kernel.1) {
            (
                Verdict::InUse,
                format!("segment id {id} is being created by pid {}", kernel.0),
            )
        } else {
            (
                Verdict::Stale,
                format!(
                    "segment id {id}: its creator (pid {}) died before writing its header, and \
                     nobody is attached",
                    kernel.0
                ),
            )
        };
        return Judgement::new(id, verdict, kernel.0, reason);
    };
    let creator = header.creator().identity.pid;
    let (verdict, reason) = match creator_alive(header, kernel) {
        None => (
            Verdict::Unknown,
            format!(
                "segment id {id}: whether its creator (pid {creator}) lives cannot be told from \
                 here (another pid namespace); left untouched"
            ),
        ),
        Some(true) => (
            Verdict::InUse,
            format!("segment id {id} belongs to the running process {creator}"),
        ),
        Some(false) if matches!(published, Published::Ready(_)) => (
            Verdict::Orphan,
            format!(
                "segment id {id} is ready, but its creator (pid {creator}) is gone and nobody is \
                 attached"
            ),
        ),
        Some(false) => (
            Verdict::Stale,
            format!(
                "segment id {id}: its creator (pid {creator}) died before finishing it, and \
                 nobody is attached"
            ),
        ),
    };
    Judgement {
        descriptor: Some(descriptor),
        ..Judgement::new(id, verdict, creator, reason)
    }
}

/// Removes segment `id` on `key`, its members set and, when its header names the lock kind
/// `lock`, the lock's kernel objects: the one removal of debris, orphans and (with `force`)
/// segments in use, shared by [`Cortex::remove_stale`], `Cortex::new` reclaiming debris,
/// and the operator's tool.
///
/// It writes: the header's removed mark (and the change counter, waking whoever waits for
/// a change) and whatever `L::destroy` writes (a futex lock's removed bit), so that every
/// process still attached gets `LockRemoved` from its next access. Without `force`, a
/// segment that someone attached to meanwhile is left alone (`AlreadyExists`). A segment
/// someone else removed meanwhile is fine: the key is free.
pub(crate) fn remove_occupant(
    key: Key,
    id: i32,
    lock: Option<&LockKind>,
    force: bool,
) -> CortexResult<()> {
    let op = if force {
        "remove segment"
    } else {
        "reclaim stale segment"
    };
    let gone = |e: &SysError| e.errno == Errno::EINVAL || e.errno == Errno::EIDRM;
    let _span = tracing::debug_span!(
        "remove",
        key = key.raw(),
        shmid = id,
        lock = lock.map(LockKind::name),
        force
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
    // A lock that cannot be placed cannot be destroyed: refuse before removing anything.
    if let Some(kind) = lock.filter(|kind| kind.names_another_lock(&map)) {
        // SAFETY: last use of this mapping; nothing borrowed from it is used afterwards.
        let unmapped = unsafe { map.unmap(key.raw(), op) };
        let refused = Err(CortexError::ForeignSegment {
            key: key.raw(),
            reason: format!(
                "segment id {id}'s header does not place a `{}` lock where that lock keeps its \
                 state (another lock kind, or a damaged header), so its lock could not be \
                 removed with it; remove it as the lock kind it was made with (`neocortex \
                 inspect` names it)",
                kind.name()
            ),
        });
        return CortexError::combine([refused, unmapped]);
    }
    // Someone may have attached since the inspection: then it is not stale any more.
    let attached = shm::stat(id).map(|ds| ds.attached).unwrap_or(0);
    let removed = if attached > 1 && !force {
        Err(CortexError::Occupied {
            key: key.raw(),
            reason: format!(
                "segment id {id} was attached to while being reclaimed; it is in use again"
            ),
        })
    } else {
        let rmid = failpoints::hit("reclaim.rmid", "shmctl(IPC_RMID)").and_then(|()| {
            // SAFETY: either the segment is stale (its creator is gone and nobody but this
            // process, which only inspects it, is attached, so nobody relies on it), or the
            // caller forces the removal on an operator's explicit request; then every
            // attached process is told below through the header's removed mark and the
            // lock's destroy.
            unsafe { shm::remove(id) }
        });
        match rmid {
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
    let mut lock_removed = Ok(());
    let mut set = Ok(());
    let header = map.header();
    if removed.is_ok() && header.format().is_ok() {
        header.mark_removed();
        super::watch::wake_for_removal(key.raw(), header);
        let members_id = header.members_id();
        // The lock goes with the segment only when the header names that lock kind at its
        // offset, inside the segment.
        if let Some(kind) = lock {
            // Only destroy uses it, and destroy needs no slot.
            let membership = Membership::new(members_id.unwrap_or(-1), 0);
            let cx = LockContext::new(key.raw(), &membership, header, map.members());
            lock_removed = kind.destroy(&cx, &map).unwrap_or(Ok(()));
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
    // SAFETY: last use of this mapping; nothing borrowed from it is used afterwards.
    let unmapped = unsafe { map.unmap(key.raw(), op) };
    CortexError::combine([removed, lock_removed, set, unmapped])
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
        if let Some(judged) = judge_kernel(id, &ds) {
            return Occupant::Keep(judged.reason);
        }
        let Ok(map) = Mapping::attach(id, ds.size, true) else {
            return Occupant::Keep(format!("segment id {id} cannot be attached to inspect it"));
        };
        let judged = judge_header(id, &ds, map.header(), Self::could_be_ours(ds.size));
        // SAFETY: nothing borrowed from `map` outlives `judge_header`; the mapping was made
        // above.
        if let Err(e) = unsafe { map.unmap(key.raw(), "inspect segment") } {
            tracing::error!(%e, "could not detach a segment attached for inspection");
        }
        Self::occupant(judged)
    }

    /// What the judgement means for this `T` and `L`: debris or an orphan only if made with
    /// this lock kind, whose objects this lock can remove.
    fn occupant(judged: Judgement) -> Occupant {
        let Judgement {
            id,
            creator,
            descriptor,
            ..
        } = judged;
        let other_lock = descriptor.filter(|d| !LockKind::of::<L>().is_named_by(d));
        match judged.verdict {
            Verdict::Stale | Verdict::Orphan if other_lock.is_some() => Occupant::Keep(format!(
                "segment id {id} (creator pid {creator} is gone) uses another lock kind ({}); \
                 remove it with that lock type",
                other_lock.map_or_else(|| "unknown".into(), |d| d.lock_name.to_text())
            )),
            Verdict::Stale => Occupant::Debris { id, creator },
            Verdict::Orphan => Occupant::Orphan { id, creator },
            _ => Occupant::Keep(judged.reason),
        }
    }

    /// Removes the segment and then the lock and members of a stale occupant (creator gone,
    /// none attached).
    pub(super) fn remove_occupant(key: Key, id: i32) -> CortexResult<()> {
        remove_occupant(key, id, Some(&LockKind::of::<L>()), false)
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
