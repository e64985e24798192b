//! Named fault-injection points for tests (feature `test-failpoints`, off by default).
//!
//! Not part of the API: for neocortex's own fault tests. With the feature off every point
//! compiles to nothing. With it on, a point does nothing until a test arms it in code with
//! [`set`] (there is no environment variable: a dependency that turns the feature on cannot
//! make a production process kill itself). Actions:
//!
//! | action | effect when the point is reached |
//! |---|---|
//! | `Kill` | the process sends itself `SIGKILL` |
//! | `Pause` | the thread sleeps forever (until killed) |
//! | `Panic` | the thread panics |
//! | `Errno(n)` | the system call the point wraps fails with errno `n` instead of running |
//!
//! The points, in the order a lifetime reaches them:
//!
//! | point | where | `Errno` wraps |
//! |---|---|---|
//! | `create.shmget` | before the segment is created | `shmget` |
//! | `create.shmat` | before the new segment is attached | `shmat` |
//! | `create.after_header` | header written, state `Initializing` | — |
//! | `create.members` | before the members set is created | `semget` |
//! | `create.lock` | before the lock is created | the lock's creation |
//! | `create.after_lock` | lock created, value not yet initialised | — |
//! | `create.before_publish` | value initialised, not yet `Ready` | — |
//! | `create.rollback_members` | removing the members set after a failed step | `semctl(IPC_RMID)` |
//! | `create.rollback_rmid` | removing a segment after a failed step | `shmctl(IPC_RMID)` |
//! | `attach.shmget` | before looking the key up | `shmget` |
//! | `attach.shmat` | found and checked, mapping it | `shmat` |
//! | `attach.before_validate` | attached, header not yet checked | — |
//! | `lock.acquired` | right after a guard's lock is taken | — |
//! | `drop.before_remove` | an owner's drop, before removing anything | — |
//! | `drop.rmid` | an owner's drop, removing the segment | `shmctl(IPC_RMID)` |
//! | `reclaim.rmid` | removing a stale segment (`remove_stale`, `new`, the tool's `gc`/`rm`) | `shmctl(IPC_RMID)` |

use neocortex_sys::{Errno, SysError, SysResult};

/// What an armed point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `SIGKILL` to the calling process.
    Kill,
    /// Sleep forever.
    Pause,
    /// Panic.
    Panic,
    /// Make the wrapped call fail with this errno.
    Errno(i32),
}

#[cfg(feature = "test-failpoints")]
mod registry {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use super::Action;

    static POINTS: Mutex<Vec<(String, Action)>> = Mutex::new(Vec::new());

    /// Whether any point was ever armed. Checked before `POINTS` is locked, so a process
    /// that arms nothing never takes the lock (a child forked while another thread holds a
    /// lock would block on it forever).
    static ARMED: AtomicBool = AtomicBool::new(false);

    fn lock() -> std::sync::MutexGuard<'static, Vec<(String, Action)>> {
        POINTS.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set(name: &str, action: Option<Action>) {
        let mut points = lock();
        points.retain(|(n, _)| n != name);
        if let Some(action) = action {
            points.push((name.to_owned(), action));
        }
        ARMED.store(true, Ordering::Release);
    }

    pub(super) fn get(name: &str) -> Option<Action> {
        if !ARMED.load(Ordering::Acquire) {
            return None;
        }
        lock().iter().find(|(n, _)| n == name).map(|&(_, a)| a)
    }
}

/// Arms `name` with `action` in this process (`None` disarms it).
///
/// Without the `failpoints` feature this does nothing.
pub fn set(name: &str, action: Option<Action>) {
    #[cfg(feature = "test-failpoints")]
    registry::set(name, action);
    #[cfg(not(feature = "test-failpoints"))]
    let _ = (name, action);
}

/// Reaches point `name`: performs its action if armed. Returns an error only for an
/// `errno` action, as if `call` had failed.
///
/// # Errors
///
/// The injected failure of `call`.
#[inline(always)]
pub(crate) fn hit(name: &str, call: &'static str) -> SysResult<()> {
    #[cfg(feature = "test-failpoints")]
    if let Some(action) = registry::get(name) {
        match action {
            Action::Kill => {
                neocortex_sys::process::kill_self();
            }
            Action::Pause => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Action::Panic => panic!("failpoint {name}"),
            Action::Errno(n) => {
                return Err(SysError {
                    call,
                    errno: Errno(n),
                })
            }
        }
    }
    #[cfg(not(feature = "test-failpoints"))]
    let _ = (
        name,
        call,
        Errno(0),
        SysError {
            call,
            errno: Errno(0),
        },
    );
    Ok(())
}

/// Reaches a point that wraps no call (kill, pause or panic only).
#[inline(always)]
pub(crate) fn reach(name: &str) {
    let _ = hit(name, "failpoint");
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "test-failpoints")]
    use super::*;

    #[cfg(feature = "test-failpoints")]
    #[test]
    fn an_armed_errno_point_fails_its_call_until_disarmed() {
        assert_eq!(hit("test.point", "shmget"), Ok(()));
        set("test.point", Some(Action::Errno(libc::ENOSPC)));
        let err = hit("test.point", "shmget").unwrap_err();
        assert_eq!((err.call, err.errno), ("shmget", Errno::ENOSPC));
        set("test.point", None);
        assert_eq!(hit("test.point", "shmget"), Ok(()));
    }
}
