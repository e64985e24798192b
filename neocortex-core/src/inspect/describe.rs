//! Building a [`SegmentInfo`]: the kernel's record, the header read through the same
//! checks as `attach`, the verdict of the staleness rules, the members and the lock.

use std::sync::atomic::Ordering;

use neocortex_sys::shm::{self, ShmStat};
use neocortex_sys::Errno;

use super::view::{not_found, LockKind, LockView, SegmentView};
use super::{proc, Layout, Member, NeocortexInfo, SegmentInfo, SegmentState, Shape, Verdict};
use crate::cortex::stale::{creator_alive, judge_header, judge_kernel, Judgement};
use crate::error::{CortexError, CortexResult, IntoOs};
use crate::header::{self, Published};
use crate::key::Key;
use crate::members::{self, Token};
use crate::segment::MIN_SIZE;

/// Every segment in this IPC namespace, as [`segment`] describes them (without
/// [`attached_pids`](SegmentInfo::attached_pids)), foreign ones included (see
/// [`SegmentInfo::neocortex`]), in the kernel's order. Segments of other users that this
/// user may not read are listed with what the kernel says of them.
///
/// # Errors
///
/// A system error when the list cannot be read; off Linux, where there is no
/// `/proc/sysvipc/shm`, an error of kind `Other` that says listing is not supported there
/// ([`segment`] works everywhere).
pub fn segments(locks: &[LockKind]) -> CortexResult<Vec<SegmentInfo>> {
    Ok(proc::segments()?
        .into_iter()
        .map(|(key, id, ds)| describe(key, id, &ds, locks).0)
        .collect())
}

/// Everything known about the segment on `key`: the kernel's record, for a neocortex
/// segment its header, members and lock (for the lock kinds in `locks`), the pids attached
/// to it, and the verdict of the staleness rules.
///
/// # Errors
///
/// `InvalidInput` for key 0; `NotFound`; a system error when the kernel's record cannot be
/// read.
pub fn segment(key: i32, locks: &[LockKind]) -> CortexResult<SegmentInfo> {
    let (id, ds) = lookup("inspect segment", key)?;
    let (mut info, _) = describe(key, id, &ds, locks);
    info.attached_pids = proc::attached_pids(id);
    Ok(info)
}

/// The segment on `key` and the kernel's record of it.
pub(super) fn lookup(op: &'static str, key: i32) -> CortexResult<(i32, ShmStat)> {
    if !Key(key).is_shareable() {
        return Err(CortexError::InvalidInput {
            key,
            reason: "key 0 is IPC_PRIVATE: it names no segment".into(),
        });
    }
    let id = match shm::shmget(key, 0, 0) {
        Ok(id) => id,
        Err(e) if e.errno == Errno::ENOENT => return Err(not_found(op, key)),
        Err(e) => return Err(CortexError::clean(op, key, e.os())),
    };
    match shm::stat(id) {
        Ok(ds) => Ok((id, ds)),
        // Not readable by this user: what /proc says of it.
        Err(e) if e.errno == Errno::EACCES => proc::stat_of(id)
            .map(|ds| (id, ds))
            .ok_or_else(|| CortexError::clean(op, key, e.os())),
        Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => Err(not_found(op, key)),
        Err(e) => Err(CortexError::clean(op, key, e.os())),
    }
}

/// Describes segment `id` on `key`; also returns the lock kind its header names, when that
/// is one of `locks`.
pub(super) fn describe<'k>(
    key: i32,
    id: i32,
    ds: &ShmStat,
    locks: &'k [LockKind],
) -> (SegmentInfo, Option<&'k LockKind>) {
    let mut info = SegmentInfo::from_stat(key, id, ds);
    let view = if ds.size >= MIN_SIZE {
        Some(SegmentView::open_id(key, id, ds.size))
    } else {
        None
    };
    // The same rules, in the same order, as `Cortex::new` on a taken key; a blank header
    // is foreign here, since only the type that made it could tell its size.
    let judged = judge_kernel(id, ds).unwrap_or_else(|| match &view {
        Some(Ok(view)) => judge_header(id, ds, view.header(), false),
        Some(Err(e)) => Judgement {
            id,
            verdict: Verdict::Unknown,
            reason: format!("segment id {id} cannot be mapped to look at it ({e})"),
            creator: ds.cpid,
            descriptor: None,
        },
        None => unreachable!("judge_kernel judges segments too small for a header"),
    });
    info.verdict = judged.verdict;
    info.reason = judged.reason;
    let mut kind = None;
    if let Some(Ok(view)) = &view {
        if let Some((nc, found)) = neocortex_info(view, ds, locks) {
            kind = found;
            if kind.is_none() && matches!(info.verdict, Verdict::Stale | Verdict::Orphan) {
                info.reason = format!(
                    "{}; its lock kind `{}` is not one this program knows, so it is not removed \
                     (remove it with `Cortex::remove_stale` from a program that uses that lock)",
                    info.reason, nc.lock
                );
            }
            info.neocortex = Some(nc);
        }
    }
    (info, kind)
}

/// What a neocortex header, its members set and its lock say; `None` for a header this
/// build does not read (or a blank one).
fn neocortex_info<'k>(
    view: &SegmentView,
    ds: &ShmStat,
    locks: &'k [LockKind],
) -> Option<(NeocortexInfo, Option<&'k LockKind>)> {
    let header = view.header();
    let (state, d) = match header.read(view.mapping().size()).ok()? {
        Published::Blank => return None,
        Published::Initializing(d) => (SegmentState::Initializing, d),
        Published::Ready(d) => (SegmentState::Ready, d),
    };
    let creator = header.creator();
    let kind = locks.iter().find(|k| k.is_named_by(&d));
    let members_set = header.members_id();
    let member_slots = members_set.and_then(|set| members::check_set(set, ds.cuid).ok());
    let live_set = members_set.filter(|_| member_slots.is_some());
    let members: Vec<Member> = live_set.map_or_else(Vec::new, |set| {
        view.mapping()
            .members()
            .noted()
            .filter(|&(_, token)| members::is_alive(set, token).unwrap_or(false))
            .map(|(pid, token)| Member {
                pid,
                slot: token.slot(),
                creator: Some(token) == Token::from_raw(creator.token),
            })
            .collect()
    });
    // Read the holder word around the lock's own answer: a word that names a pid while the
    // lock is free, both times, was left by a holder that died (a SysV lock released by
    // the kernel at the death; the next holder will be told).
    let recorded = header.recorded_holder();
    let lock: Option<LockView> = kind.and_then(|k| view.lock_of(k));
    let recorded_again = header.recorded_holder();
    let released_by_death = lock.as_ref().is_some_and(|l| {
        !l.detects_dead_holders && l.holder.is_none() && recorded != 0 && recorded == recorded_again
    });
    // A lock that names its holder by member token: a holder with no live token is dead
    // (nobody took the lock over yet).
    let holder = lock.as_ref().and_then(|l| l.holder);
    let holder_dead = lock.as_ref().is_some_and(|l| l.detects_dead_holders)
        && live_set.is_some()
        && holder.is_some_and(|pid| pid > 0 && !members.iter().any(|m| m.pid == pid));
    let dead_holder = header
        .dead_holder()
        .or_else(|| released_by_death.then_some(recorded))
        .or_else(|| holder.filter(|_| holder_dead));
    let mut semaphore_sets: Vec<i32> = live_set.into_iter().collect();
    if let Some(l) = &lock {
        semaphore_sets.extend(&l.semaphore_sets);
    }
    let info = NeocortexInfo {
        state,
        type_name: d.type_name.to_text(),
        lock: d.lock_name.to_text(),
        lock_known: kind.is_some(),
        layout: Layout {
            shape: match d.shape {
                header::Shape::Value => Shape::Value,
                header::Shape::Slice => Shape::Slice,
            },
            element_size: d.elem_size,
            element_align: d.elem_align,
            len: d.len,
            lock_offset: d.layout.lock_offset,
            data_offset: d.layout.data_offset,
            total_size: d.layout.total_size,
        },
        creator_pid: creator.identity.pid,
        creator_alive: creator_alive(header, (ds.cpid, ds.ctime)),
        owner_died: dead_holder.is_some(),
        dead_holder,
        holder,
        version: header.seq().load(Ordering::SeqCst) >> 1,
        removed: header.is_removed(),
        members_set,
        member_slots,
        members,
        watchers: live_set.and_then(|set| members::watchers(set).ok()),
        semaphore_sets,
    };
    Some((info, kind))
}
