//! The SysV semaphore-set mechanism behind [`Semaphore`](crate::Semaphore) and
//! [`RwSemaphore`](crate::RwSemaphore): one place that creates a private set, finds it again
//! from the segment, runs `semop`/`semop_timed` under a [`Wait`], maps the kernel's errors and
//! removes the set.
//!
//! Every operation carries `SEM_UNDO` (the kernel reverts a dead process's operations, which
//! is what makes these locks crash-safe; mixing undo and non-undo operations on one semaphore
//! would corrupt the count), so the locks built on this module only ever describe their
//! operations as [`Op`]s.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use neocortex_core::{
    CortexError, CortexResult, ErrorKind, Leftover, OsError, Permission, Remaining, Wait,
};
use neocortex_sys::{sem, Errno, SysError, IPC_PRIVATE, SEM_UNDO};

/// A `-sys` error as the core's `OsError`.
pub(crate) fn os(e: SysError) -> OsError {
    OsError::new(e.call, e.errno.raw())
}

neocortex_core::shm_safe! {
    /// The state of a [`SysvSemaphore`](crate::SysvSemaphore) or
    /// [`RwSemaphore`](crate::RwSemaphore) in the segment: the id of its semaphore set.
    ///
    /// Both locks use this state; the lock kind is part of the segment's fingerprint, so one
    /// is never attached as the other.
    #[derive(Debug)]
    pub struct SysvState {
        /// 1 once `id` holds a semaphore set id (0 in a fresh segment).
        valid: AtomicU32,
        /// The set's id, as `ipcs -s` lists it.
        id: AtomicI32,
    }
}

impl SysvState {
    /// A zero-filled state, as a fresh segment holds it.
    #[cfg(test)]
    pub(crate) fn zeroed() -> Self {
        Self {
            valid: AtomicU32::new(0),
            id: AtomicI32::new(0),
        }
    }

    /// The recorded set id, if creation got as far as recording one.
    pub(crate) fn stored_id(&self) -> Option<i32> {
        (self.valid.load(Ordering::Acquire) == 1).then(|| self.id.load(Ordering::Relaxed))
    }

    fn record(&self, id: i32) {
        self.id.store(id, Ordering::Relaxed);
        self.valid.store(1, Ordering::Release);
    }

    fn forget(&self) {
        self.valid.store(0, Ordering::Release);
    }
}

/// One operation on one semaphore of a set; always applied with `SEM_UNDO`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    num: u16,
    delta: i16,
}

impl Op {
    /// Adds `delta` to semaphore `num` (a negative `delta` waits until that is possible).
    pub(crate) const fn add(num: u16, delta: i16) -> Self {
        Self { num, delta }
    }

    /// Waits until semaphore `num` is zero.
    pub(crate) const fn wait_zero(num: u16) -> Self {
        Self { num, delta: 0 }
    }

    fn sembuf(self, nowait: bool) -> libc::sembuf {
        let mut flags = SEM_UNDO;
        if nowait {
            flags |= libc::IPC_NOWAIT;
        }
        libc::sembuf {
            sem_num: self.num,
            sem_op: self.delta,
            sem_flg: flags as libc::c_short,
        }
    }
}

/// Creates a private set with `initial.len()` semaphores set to `initial`, mode `mode`, and
/// records its id in `state` before setting any value, so a creator killed half-way leaves a
/// set that [`destroy`] finds.
///
/// # Errors
///
/// `CleanSystem` when the set could not be made, or was made and removed again;
/// `DirtySystem` naming the set when setting a value failed and so did removing it.
pub(crate) fn create(
    key: i32,
    state: &SysvState,
    mode: Permission,
    initial: &[u16],
) -> CortexResult<i32> {
    const OP: &str = "create semaphore";
    let nsems = libc::c_int::try_from(initial.len()).unwrap_or(libc::c_int::MAX);
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode.flags();
    let id =
        sem::semget(IPC_PRIVATE, nsems, flags).map_err(|e| CortexError::clean(OP, key, os(e)))?;
    state.record(id);
    for (num, &value) in (0u16..).zip(initial) {
        // SAFETY: SETVAL is safe here: nobody else knows this private set yet, so no holder
        // can be let in or out and no undo record of another process can be wiped.
        if let Err(e) = unsafe { sem::set_value(id, num, value.into()) } {
            state.forget();
            // SAFETY: as above, the set is still private to this call.
            return Err(match unsafe { sem::remove(id) } {
                Ok(()) => CortexError::clean(OP, key, os(e)),
                Err(_) => CortexError::dirty(OP, key, os(e), vec![Leftover::SemaphoreSet(id)]),
            });
        }
    }
    Ok(id)
}

/// Finds the set recorded in `state` and checks that it exists and has `nsems` semaphores.
///
/// # Errors
///
/// `ForeignSegment` when no id is recorded or the set has another size; `LockRemoved` when
/// the set is gone; `PermissionDenied` and others from `IPC_STAT`.
pub(crate) fn attach(key: i32, state: &SysvState, nsems: u16) -> CortexResult<i32> {
    let Some(id) = state.stored_id() else {
        return Err(CortexError::ForeignSegment {
            key,
            reason: "a ready segment without a semaphore id".into(),
        });
    };
    match sem::stat(id) {
        Ok(ds) if ds.nsems == u64::from(nsems) => Ok(id),
        Ok(ds) => Err(CortexError::ForeignSegment {
            key,
            reason: format!(
                "semaphore set {id} has {} semaphores, expected {nsems}",
                ds.nsems
            ),
        }),
        Err(e) => Err(lock_error("attach semaphore", key, e)),
    }
}

/// Applies `ops` atomically, waiting as `wait` says: `IPC_NOWAIT` for [`Wait::Never`],
/// `semtimedop` with the time left for a deadline. An interrupted wait (a signal,
/// `SIGSTOP`/`SIGCONT`) is retried with the time left.
///
/// # Errors
///
/// `WouldBlock` or `Timeout` (from [`Wait::gave_up`]), `LockRemoved` when the set is gone,
/// `CleanSystem` for anything else (e.g. `EACCES`).
pub(crate) fn acquire<const N: usize>(
    key: i32,
    id: i32,
    ops: [Op; N],
    wait: Wait,
) -> CortexResult<()> {
    loop {
        let mut now = ops.map(|op| op.sembuf(false));
        let result = match wait.remaining() {
            // An expired deadline still gets one attempt: a zero timeout on a free lock
            // succeeds, as `pthread_mutex_timedlock` does.
            Remaining::NoWait | Remaining::Expired => {
                let mut once = ops.map(|op| op.sembuf(true));
                // SAFETY: `once` are one lock's protocol operations, every one with SEM_UNDO
                // (see `Op`), applied by the lock built on this set.
                unsafe { sem::semop(id, &mut once) }
            }
            // SAFETY: as above.
            Remaining::Forever => unsafe { sem::semop(id, &mut now) },
            // SAFETY: as above.
            Remaining::For(left) => unsafe { sem::semop_timed(id, &mut now, Some(left)) },
        };
        match result {
            Ok(()) => return Ok(()),
            // A signal or SIGSTOP/SIGCONT: try again with what is left of the wait.
            Err(e) if e.errno == Errno::EINTR => continue,
            // IPC_NOWAIT would have blocked, or semtimedop timed out.
            Err(e) if e.errno == Errno::EAGAIN => return Err(wait.gave_up(key)),
            Err(e) => return Err(lock_error("lock", key, e)),
        }
    }
}

/// Applies `ops` atomically without ever blocking: for releases and other operations that
/// only add to a semaphore, or take back what this process added.
///
/// # Errors
///
/// `LockRemoved` when the set is gone; `EAGAIN` (the ops would have had to wait, so this
/// process did not hold what it gives back) as a `CleanSystem` error of kind `Other`;
/// `CleanSystem` for anything else.
pub(crate) fn apply_now<const N: usize>(
    op: &'static str,
    key: i32,
    id: i32,
    ops: [Op; N],
) -> CortexResult<()> {
    loop {
        // SAFETY: `ops` are one lock's protocol operations (a release), with SEM_UNDO.
        match unsafe { sem::semop(id, &mut ops.map(|op| op.sembuf(true))) } {
            Ok(()) => return Ok(()),
            Err(e) if e.errno == Errno::EINTR => continue,
            Err(e) if e.errno == Errno::EAGAIN => {
                return Err(CortexError::clean_with_hint(
                    op,
                    key,
                    ErrorKind::Other,
                    os(e),
                    "the semaphore count says this process does not hold the lock",
                ))
            }
            Err(e) => return Err(lock_error(op, key, e)),
        }
    }
}

/// Removes the set recorded in `state`, if any. A set already removed from outside is not
/// an error (it is logged).
///
/// # Errors
///
/// `DirtySystem` naming the set when `IPC_RMID` fails (e.g. `EPERM`: not the owner).
pub(crate) fn destroy(key: i32, state: &SysvState) -> CortexResult<()> {
    let Some(id) = state.stored_id() else {
        return Ok(());
    };
    // SAFETY: `destroy` is called by the segment's owner tearing it down (after marking
    // the segment removed), by a failed creation, or by a reclaimer of a stale segment
    // nobody is attached to: nobody relies on the lock any more.
    match unsafe { sem::remove(id) } {
        Ok(()) => Ok(()),
        Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
            tracing::warn!(
                key,
                semid = id,
                "semaphore set was already removed from outside"
            );
            Ok(())
        }
        Err(e) => Err(CortexError::dirty(
            "remove semaphore",
            key,
            os(e),
            vec![Leftover::SemaphoreSet(id)],
        )),
    }
}

/// Removes the set recorded in a state when dropped, so a failing test leaves nothing behind.
#[cfg(test)]
pub(crate) struct RemoveOnDrop<'a>(pub(crate) i32, pub(crate) &'a SysvState);

#[cfg(test)]
impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = destroy(self.0, self.1) {
            eprintln!("test cleanup: {e}");
        }
    }
}

/// `EIDRM`/`EINVAL` mean the set is gone (removed while waiting, or before the call).
fn lock_error(op: &'static str, key: i32, e: SysError) -> CortexError {
    if e.errno == Errno::EIDRM || e.errno == Errno::EINVAL {
        CortexError::lock_removed(key, Some(os(e)))
    } else {
        CortexError::clean(op, key, os(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_always_carry_sem_undo() {
        let b = Op::add(2, -1).sembuf(true);
        assert_eq!((b.sem_num, b.sem_op), (2, -1));
        assert_eq!(
            i32::from(b.sem_flg),
            SEM_UNDO | libc::IPC_NOWAIT,
            "nowait op"
        );
        let b = Op::wait_zero(1).sembuf(false);
        assert_eq!((b.sem_num, b.sem_op), (1, 0));
        assert_eq!(i32::from(b.sem_flg), SEM_UNDO, "waiting op");
    }

    #[test]
    fn create_records_the_id_sets_values_and_destroy_removes() {
        let key = 0x5359_0001;
        let state = SysvState::zeroed();
        assert_eq!(state.stored_id(), None);
        let id = create(key, &state, Permission::OwnerOnly, &[3, 0, 7]).expect("create");
        let _cleanup = RemoveOnDrop(key, &state);
        assert_eq!(state.stored_id(), Some(id));
        let values: Vec<_> = (0..3)
            .map(|n| sem::get_value(id, n).expect("getval"))
            .collect();
        assert_eq!(values, [3, 0, 7]);
        let ds = sem::stat(id).expect("stat");
        assert_eq!(ds.mode & 0o777, 0o600);
        assert_eq!(attach(key, &state, 3).expect("attach"), id);
        let wrong = attach(key, &state, 1).expect_err("wrong size");
        assert_eq!(wrong.kind(), ErrorKind::LayoutMismatch, "{wrong}");
        destroy(key, &state).expect("destroy");
        assert_eq!(sem::stat(id).expect_err("gone").errno, Errno::EINVAL);
        // Gone already: destroy again is fine, attach says the lock was removed.
        destroy(key, &state).expect("destroy again");
        let gone = attach(key, &state, 3).expect_err("attach removed");
        assert_eq!(gone.kind(), ErrorKind::LockRemoved, "{gone}");
    }

    #[test]
    fn nothing_recorded_means_nothing_to_attach_or_destroy() {
        let key = 0x5359_0002;
        let state = SysvState::zeroed();
        let e = attach(key, &state, 1).expect_err("no id");
        assert_eq!(e.kind(), ErrorKind::LayoutMismatch, "{e}");
        destroy(key, &state).expect("nothing to destroy");
    }

    #[test]
    fn acquire_waits_times_out_and_reports_removal() {
        let key = 0x5359_0003;
        let state = SysvState::zeroed();
        let id = create(key, &state, Permission::OwnerOnly, &[1]).expect("create");
        let _cleanup = RemoveOnDrop(key, &state);
        acquire(key, id, [Op::add(0, -1)], Wait::Never).expect("free");
        let busy = acquire(key, id, [Op::add(0, -1)], Wait::Never).expect_err("held");
        assert_eq!(busy.kind(), ErrorKind::WouldBlock);
        let started = std::time::Instant::now();
        let timeout = std::time::Duration::from_millis(60);
        let late = acquire(key, id, [Op::add(0, -1)], Wait::timeout(timeout)).expect_err("held");
        assert_eq!(late.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        apply_now("unlock", key, id, [Op::add(0, 1)]).expect("release");
        assert_eq!(sem::get_value(id, 0).expect("getval"), 1);
        // Giving back what this process does not hold is refused, not waited for.
        apply_now("unlock", key, id, [Op::add(0, -1)]).expect("take");
        let bogus = apply_now("unlock", key, id, [Op::add(0, -1)]).expect_err("not held");
        assert_eq!(bogus.kind(), ErrorKind::Other, "{bogus}");
        apply_now("unlock", key, id, [Op::add(0, 1)]).expect("release");
        destroy(key, &state).expect("destroy");
        let removed = acquire(key, id, [Op::add(0, -1)], Wait::Forever).expect_err("removed");
        assert_eq!(removed.kind(), ErrorKind::LockRemoved, "{removed}");
        assert_eq!(sem::stat(id).expect_err("gone").errno, Errno::EINVAL);
    }
}
