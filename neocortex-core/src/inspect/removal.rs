//! Removing segments on request ([`remove`]) and collecting what was left behind
//! ([`collect`]), through the one removal that `Cortex::new` and `Cortex::remove_stale` use.

use super::describe::{describe, lookup};
use super::view::LockKind;
use super::{proc, SegmentInfo, Verdict};
use crate::cortex::stale::remove_occupant;
use crate::error::{CortexError, CortexResult, ErrorKind};
use crate::key::Key;

/// What a removal may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allow {
    /// Debris only.
    Stale,
    /// Debris and orphans.
    Orphans,
    /// Any neocortex segment of this user whose lock kind is known.
    Force,
}

/// The lock kind to remove `info`'s segment with, or why it must be left alone.
fn removable<'k>(
    info: &SegmentInfo,
    allow: Allow,
    kind: Option<&'k LockKind>,
) -> Result<&'k LockKind, String> {
    match info.verdict {
        Verdict::Stale => {}
        Verdict::Orphan if allow != Allow::Stale => {}
        Verdict::Orphan => {
            return Err(format!(
                "{}: an orphan, kept unless orphans are asked for",
                info.reason
            ))
        }
        Verdict::InUse | Verdict::Unknown if allow == Allow::Force => {}
        Verdict::InUse | Verdict::Unknown => return Err(in_use(info)),
        _ => {
            return Err(format!(
                "{}; neocortex never removes a foreign segment or another user's",
                info.reason
            ))
        }
    }
    let Some(nc) = &info.neocortex else {
        return Err(format!(
            "{}; its header cannot be read, so it is left alone",
            info.reason
        ));
    };
    kind.ok_or_else(|| {
        format!(
            "segment id {}: its lock kind `{}` is not one this program knows, so its lock's \
             kernel objects could not be removed with it; remove it with \
             `Cortex::remove_stale` from a program that uses that lock",
            info.shmid, nc.lock
        )
    })
}

/// Why a segment in use is left alone: who is attached, whether its creator lives.
fn in_use(info: &SegmentInfo) -> String {
    let mut why = info.reason.clone();
    let attached = info.attached_pids.clone().unwrap_or_default();
    if !attached.is_empty() {
        why += &format!("; attached: pids {}", list(&attached));
    }
    if let Some(nc) = &info.neocortex {
        // Members hold a token without being attached (a creator that detached).
        let members: Vec<i32> = nc
            .members
            .iter()
            .map(|m| m.pid)
            .filter(|pid| !attached.contains(pid))
            .collect();
        if !members.is_empty() {
            why += &format!("; live members not attached: pids {}", list(&members));
        }
        if nc.creator_alive == Some(true) && info.attached > 0 {
            why += &format!("; its creator (pid {}) is alive", nc.creator_pid);
        }
    }
    why + "; forcing the removal takes it from under them (they get LockRemoved)"
}

fn list(pids: &[i32]) -> String {
    pids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes the neocortex segment on `key`, with its members set and its lock's kernel
/// objects, if nobody is attached and its creator is dead ([`Verdict::Stale`] or
/// [`Verdict::Orphan`]); with `force`, also when processes are attached or the creator
/// lives: they keep their mapping, and their next lock, read or wait fails with
/// `LockRemoved` (the removal writes the header's removed mark and the lock's removed
/// state for them to see). Returns the segment as it was found.
///
/// Never removes, forced or not, a segment that is not a neocortex segment, that belongs
/// to another user, or whose lock kind is not in `locks`.
///
/// # Errors
///
/// `InvalidInput` for key 0; `NotFound`; `AlreadyExists` when the segment is left alone,
/// saying why (who is attached, whether the creator lives); a system error from the
/// removal (`DirtySystem` naming what is left).
pub fn remove(key: i32, force: bool, locks: &[LockKind]) -> CortexResult<SegmentInfo> {
    let (id, ds) = lookup("remove segment", key)?;
    let (mut info, kind) = describe(key, id, &ds, locks);
    info.attached_pids = proc::attached_pids(id);
    let allow = if force { Allow::Force } else { Allow::Orphans };
    let kind =
        removable(&info, allow, kind).map_err(|reason| CortexError::Occupied { key, reason })?;
    // Debris and orphans go only while nobody is attached, checked again with the segment
    // mapped; a segment in use goes because it was forced.
    let in_use = matches!(info.verdict, Verdict::InUse | Verdict::Unknown);
    remove_occupant(Key(key), id, Some(kind), in_use)?;
    tracing::info!(key, shmid = id, verdict = %info.verdict, "removed segment");
    Ok(info)
}

/// What [`collect`] did with a segment.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Removed, with its members set and its lock.
    Removed,
    /// Would be removed (a dry run).
    WouldRemove,
    /// Left alone, and why: an orphan when orphans were not asked for, a lock kind not
    /// passed in, or someone attached meanwhile.
    Kept(String),
    /// The removal failed.
    Failed(CortexError),
}

/// A segment [`collect`] looked at, and what it did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Collected {
    /// The segment as it was found.
    pub info: SegmentInfo,
    /// What was done.
    pub outcome: Outcome,
}

/// Removes every segment in this IPC namespace that `Cortex::new` would reclaim on its
/// key ([`Verdict::Stale`]: creation never finished, creator dead, nobody attached), and
/// with `orphans` also every [`Verdict::Orphan`] (ready, creator dead, nobody attached),
/// each with its members set and its lock. With `dry_run` nothing is removed. Returns every
/// stale or orphaned segment found, with what was done.
///
/// Never touches a segment that is attached, whose creator is alive (or cannot be told),
/// that belongs to another user, that is not a neocortex segment, or whose lock kind is not
/// in `locks`.
///
/// # Errors
///
/// When the segments cannot be listed (off Linux: not supported). Failed removals are
/// reported per segment ([`Outcome::Failed`]).
pub fn collect(orphans: bool, dry_run: bool, locks: &[LockKind]) -> CortexResult<Vec<Collected>> {
    let allow = if orphans {
        Allow::Orphans
    } else {
        Allow::Stale
    };
    let mut found = Vec::new();
    for (key, id, ds) in proc::segments()? {
        let (info, kind) = describe(key, id, &ds, locks);
        if !matches!(info.verdict, Verdict::Stale | Verdict::Orphan) {
            continue;
        }
        let outcome = match removable(&info, allow, kind) {
            Err(reason) => Outcome::Kept(reason),
            Ok(_) if dry_run => Outcome::WouldRemove,
            // Nobody may have attached meanwhile (checked again with the segment mapped);
            // a dead creator stays dead.
            Ok(kind) => match remove_occupant(Key(key), id, Some(kind), false) {
                Ok(()) => {
                    tracing::info!(key, shmid = id, verdict = %info.verdict, "removed segment");
                    Outcome::Removed
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Outcome::Kept(e.to_string()),
                Err(e) => Outcome::Failed(e),
            },
        };
        found.push(Collected { info, outcome });
    }
    Ok(found)
}
