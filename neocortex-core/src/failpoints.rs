//! Named fault-injection points for tests (feature `failpoints`, off by default).
//!
//! With the feature off every point compiles to nothing. With it on, a point does nothing
//! until it is armed, either in code with [`set`] or for a whole process with the environment
//! variable `NEOCORTEX_FAILPOINTS="name=action;name=action"`. Actions:
//!
//! | action | effect when the point is reached |
//! |---|---|
//! | `kill` | the process sends itself `SIGKILL` |
//! | `pause` | the thread sleeps forever (until killed) |
//! | `panic` | the thread panics |
//! | `errno(N)` | the system call the point wraps fails with errno `N` instead of running |
//!
//! The points, in the order a lifetime reaches them:
//!
//! | point | where | `errno` wraps |
//! |---|---|---|
//! | `create.shmget` | before the segment is created | `shmget` |
//! | `create.shmat` | before the new segment is attached | `shmat` |
//! | `create.after_header` | header written, state `Initializing` | — |
//! | `create.lock` | before the lock is created | the lock's creation |
//! | `create.after_lock` | lock created, value not yet initialised | — |
//! | `create.before_publish` | value initialised, not yet `Ready` | — |
//! | `create.rollback_rmid` | removing a segment after a failed step | `shmctl(IPC_RMID)` |
//! | `attach.shmget` | before looking the key up | `shmget` |
//! | `attach.before_validate` | attached, header not yet checked | — |
//! | `lock.acquired` | right after a guard's lock is taken | — |
//! | `drop.before_remove` | an owner's drop, before removing anything | — |
//! | `drop.rmid` | an owner's drop, removing the segment | `shmctl(IPC_RMID)` |

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

#[cfg(feature = "failpoints")]
mod registry {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Mutex;

    use super::Action;

    static POINTS: Mutex<Vec<(String, Action)>> = Mutex::new(Vec::new());

    /// Whether any point may be armed. Checked before `POINTS` is locked, so a process that
    /// arms nothing never takes the lock (a child forked while another thread holds a lock
    /// would block on it forever). States: environment not read yet, being read, nothing
    /// armed, something armed.
    static ARMED: AtomicU8 = AtomicU8::new(UNREAD);
    const UNREAD: u8 = 0;
    const READING: u8 = 1;
    const NONE: u8 = 2;
    const SOME: u8 = 3;

    fn lock() -> std::sync::MutexGuard<'static, Vec<(String, Action)>> {
        POINTS.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn armed() -> bool {
        match ARMED.load(Ordering::Acquire) {
            SOME => true,
            UNREAD => {
                if ARMED
                    .compare_exchange(UNREAD, READING, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return ARMED.load(Ordering::Acquire) == SOME;
                }
                let from_env = std::env::var("NEOCORTEX_FAILPOINTS").unwrap_or_default();
                let parsed = super::parse(&from_env).unwrap_or_default();
                let some = !parsed.is_empty();
                if some {
                    lock().extend(parsed);
                }
                let _ = ARMED.compare_exchange(
                    READING,
                    if some { SOME } else { NONE },
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                ARMED.load(Ordering::Acquire) == SOME
            }
            _ => false,
        }
    }

    pub(super) fn set(name: &str, action: Option<Action>) {
        let _ = armed();
        let mut points = lock();
        points.retain(|(n, _)| n != name);
        if let Some(action) = action {
            points.push((name.to_owned(), action));
        }
        ARMED.store(SOME, Ordering::Release);
    }

    pub(super) fn get(name: &str) -> Option<Action> {
        if !armed() {
            return None;
        }
        lock().iter().find(|(n, _)| n == name).map(|&(_, a)| a)
    }
}

/// Arms `name` with `action` in this process (`None` disarms it).
///
/// Without the `failpoints` feature this does nothing.
pub fn set(name: &str, action: Option<Action>) {
    #[cfg(feature = "failpoints")]
    registry::set(name, action);
    #[cfg(not(feature = "failpoints"))]
    let _ = (name, action);
}

/// Parses `name=action;name=action`.
///
/// # Errors
///
/// The first entry that is not understood.
pub fn parse(spec: &str) -> Result<Vec<(String, Action)>, String> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (name, action) = entry
                .split_once('=')
                .ok_or_else(|| format!("no `=` in {entry:?}"))?;
            let action = match action.trim() {
                "kill" => Action::Kill,
                "pause" => Action::Pause,
                "panic" => Action::Panic,
                other => {
                    let n = other
                        .strip_prefix("errno(")
                        .and_then(|r| r.strip_suffix(')'))
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| format!("unknown action {other:?}"))?;
                    Action::Errno(n)
                }
            };
            Ok((name.trim().to_owned(), action))
        })
        .collect()
}

/// Reaches point `name`: performs its action if armed. Returns an error only for an
/// `errno` action, as if `call` had failed.
///
/// # Errors
///
/// The injected failure of `call`.
#[inline(always)]
pub(crate) fn hit(name: &str, call: &'static str) -> SysResult<()> {
    #[cfg(feature = "failpoints")]
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
    #[cfg(not(feature = "failpoints"))]
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
    use super::*;

    #[test]
    fn parses_every_action_and_rejects_nonsense() {
        let parsed = parse(" a=kill; b=pause;c=panic ; d=errno(13);").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".to_owned(), Action::Kill),
                ("b".to_owned(), Action::Pause),
                ("c".to_owned(), Action::Panic),
                ("d".to_owned(), Action::Errno(13)),
            ]
        );
        assert!(parse("x").is_err());
        assert!(parse("x=errno(y)").is_err());
        assert!(parse("x=explode").is_err());
    }

    #[cfg(feature = "failpoints")]
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
