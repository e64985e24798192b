//! Pid namespaces that share one IPC namespace (containers started with a shared IPC
//! namespace): `Semaphore` knows its holders by member tokens the kernel keeps, so it works
//! across them, never takes over from a live holder in another namespace, and takes over
//! from a dead one; a pid-based lock is refused there, by namespace identity, not by pid
//! numbers.
// Linux only: this file needs pid namespaces (`unshare(CLONE_NEWPID)`).
#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{assert_gone, fork, park, unique_key, Exit, Pipe};
use neocortex::{
    Acquired, Cortex, CortexResult, CortexSync, ErrorKind, InPlace, LockContext, Permission,
    Remaining, Semaphore, Wait, ATTACH_INIT_WAIT,
};

neocortex::shm_safe! {
    /// A pid-based lock's word.
    #[derive(Debug)]
    pub struct PidState {
        word: AtomicU32,
    }
}

/// A lock that names its holder by pid (without takeover): the kind attach must refuse
/// across pid namespaces, where pids mean different processes.
#[derive(Debug)]
struct PidLock;

// SAFETY: exclusion by CAS of the word from 0 to the holder's pid; Acquire/Release; the
// word is the only state; it never takes over (a dead holder blocks it: only used in these
// tests, where no holder dies); waits honour `Wait`.
unsafe impl CortexSync for PidLock {
    type Settings = ();
    type State = PidState;
    type Access = InPlace;
    const KIND: &'static str = "test-pid-lock";
    const PID_BASED: bool = true;
    fn permission(_: &()) -> Permission {
        Permission::OwnerOnly
    }
    fn create(_: &LockContext<'_>, _: &PidState, _: &()) -> CortexResult<Self> {
        Ok(PidLock)
    }
    fn attach(_: &LockContext<'_>, _: &PidState) -> CortexResult<Self> {
        Ok(PidLock)
    }
    fn lock(&self, cx: &LockContext<'_>, state: &PidState, wait: Wait) -> CortexResult<Acquired> {
        loop {
            let me = std::process::id();
            if state
                .word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Acquired::Released);
            }
            if matches!(wait.remaining(), Remaining::NoWait | Remaining::Expired) {
                return Err(wait.gave_up(cx.key()));
            }
            std::thread::yield_now();
        }
    }
    unsafe fn unlock(&self, _: &LockContext<'_>, state: &PidState) -> CortexResult<()> {
        state.word.store(0, Ordering::Release);
        Ok(())
    }
    fn destroy(_: &LockContext<'_>, _: &PidState) -> CortexResult<()> {
        Ok(())
    }
}

/// Runs `body` in a grandchild that is the first process of a new pid namespace; 77 when
/// this machine allows no new pid namespace.
fn in_another_pid_namespace(body: impl FnOnce() -> i32) -> Exit {
    let child = fork(move || {
        // SAFETY: unshare with a plain flag in a forked child; its next child is the first
        // process of the new pid namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        let grandchild = fork(body);
        match grandchild.wait() {
            Exit::Code(code) => code,
            Exit::Signal(sig) => 100 + sig,
        }
    });
    child.wait()
}

fn skipped(outcome: Exit) -> bool {
    if outcome == Exit::Code(77) {
        eprintln!("SKIPPED: no new pid namespace here (needs CAP_SYS_ADMIN)");
        return true;
    }
    false
}

#[test]
fn a_pid_based_lock_refuses_an_attacher_in_another_pid_namespace() {
    let key = unique_key("pid_lock_other_namespace");
    let cortex: Cortex<u64, PidLock> = Cortex::new(key, 0, None).unwrap();
    let outcome = in_another_pid_namespace(move || match Cortex::<u64, PidLock>::attach(key) {
        Ok(_) => 1,
        Err(e) if e.kind() == ErrorKind::InvalidInput && e.to_string().contains("namespace") => 0,
        Err(_) => 2,
    });
    if !skipped(outcome) {
        assert_eq!(outcome, Exit::Code(0), "refused with InvalidInput");
    }
    let (id, sets) = (cortex.segment_id(), cortex.semaphore_sets());
    drop(cortex);
    assert_gone(key, &[id], &sets);
}

#[test]
fn a_pid_based_lock_attaches_in_the_same_pid_namespace() {
    let _guard = common::watchdog();
    let key = unique_key("pid_lock_same_namespace");
    let cortex: Cortex<u64, PidLock> = Cortex::new(key, 0, None).unwrap();
    let child = fork(move || match Cortex::<u64, PidLock>::attach(key) {
        Ok(c) => match c.write(3) {
            Ok(()) => 0,
            Err(_) => 3,
        },
        Err(_) => 2,
    });
    assert_eq!(child.wait(), Exit::Code(0), "attached and wrote");
    assert_eq!(cortex.read().unwrap(), 3);
    let (id, sets) = (cortex.segment_id(), cortex.semaphore_sets());
    drop(cortex);
    assert_gone(key, &[id], &sets);
}

/// This process's pids from `/proc/self/status` (`NSpid:`), outermost namespace first.
fn ns_pids() -> Vec<i32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .map(|pids| {
            pids.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Pid numbers can agree across namespaces: a creator whose pid in its own namespace is the
/// number this namespace sees it by. Comparing numbers would let this process in; the
/// namespace identity the header records refuses it.
#[test]
fn a_pid_based_lock_is_refused_across_namespaces_even_when_the_pid_numbers_agree() {
    let _guard = common::watchdog();
    if !common::is_root() {
        common::skip("steering pid numbers in a new pid namespace needs root");
        return;
    }
    let key = unique_key("pid_lock_equal_numbers");
    let made = Pipe::new(); // creator -> here: 1, its pid, its members set
    let done = Pipe::new(); // here -> creator: finished
    let child = fork(|| {
        // SAFETY: as in `in_another_pid_namespace`.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        let first = fork(|| {
            // The first process of the new namespace steers its namespace's next pid
            // (`ns_last_pid`) to the number the machine's next pid will likely have, until
            // a creator gets the same number in both namespaces.
            let report = Pipe::new();
            for _ in 0..500 {
                let creator = fork(|| {
                    let pids = ns_pids();
                    if pids.len() != 2 || pids[0] != pids[1] {
                        report.send_i32(pids.first().copied().unwrap_or(-1));
                        return 0;
                    }
                    report.send_i32(0);
                    let Ok(c) = Cortex::<u64, PidLock>::new(key, 7, None) else {
                        made.send(2);
                        return 3;
                    };
                    made.send(1);
                    made.send_i32(pids[1]);
                    made.send_i32(c.semaphore_sets()[0]);
                    done.recv();
                    drop(c);
                    0
                });
                let machine_pid = report.recv_i32();
                let code = creator.wait();
                if machine_pid == 0 {
                    return match code {
                        Exit::Code(code) => code,
                        Exit::Signal(sig) => 100 + sig,
                    };
                }
                if machine_pid < 0 {
                    return 4;
                }
                // The next pid here is one past this creator's number on the machine.
                if std::fs::write("/proc/sys/kernel/ns_last_pid", machine_pid.to_string()).is_err()
                {
                    return 5;
                }
            }
            6
        });
        match first.wait() {
            Exit::Code(code) => code,
            Exit::Signal(sig) => 100 + sig,
        }
    });
    let Some(1) = made.recv_timeout(Duration::from_secs(60)) else {
        let outcome = child.wait();
        if skipped(outcome) {
            return;
        }
        panic!("no creator with equal pid numbers (exit {outcome:?}: 4-6 see the test)");
    };
    let pid = made.recv_i32();
    let set = made.recv_i32();
    let id = neocortex_sys::shm::shmget(key, 0, 0).unwrap();
    assert_eq!(
        neocortex_sys::shm::stat(id).unwrap().cpid,
        pid,
        "the creator's pid here is the number it has in its own namespace"
    );
    match Cortex::<u64, PidLock>::attach(key) {
        Err(e) if e.kind() == ErrorKind::InvalidInput && e.to_string().contains("namespace") => {}
        other => panic!("a pid-based lock across pid namespaces must be refused: {other:?}"),
    }
    done.send(1);
    assert_eq!(child.wait(), Exit::Code(0));
    assert_gone(key, &[id], &[set]);
}

/// A creator killed in its initialiser, looked at from a pid namespace where it is
/// invisible (the kernel reports creator pid 0 there): its member token, which the kernel
/// released at its death, says it died, so attach says so at once rather than waiting for
/// a creator it cannot see.
#[test]
fn a_creator_killed_mid_creation_is_dead_from_a_pid_namespace_that_cannot_see_it() {
    let _guard = common::watchdog();
    let key = unique_key("creator_killed_seen_from_other_namespace");
    let in_init = Pipe::new();
    let creator = fork(|| {
        let _ = Cortex::<u64, Semaphore>::new_with(key, None, |_| {
            in_init.send(1);
            park()
        });
        2
    });
    in_init.recv();
    creator.signal(libc::SIGKILL);
    assert_eq!(creator.wait(), Exit::Signal(libc::SIGKILL));
    let info = neocortex::inspect::segment(key).unwrap();
    let sets = info
        .neocortex
        .as_ref()
        .expect("a neocortex segment")
        .semaphore_sets
        .clone();
    let outcome = in_another_pid_namespace(|| {
        let start = Instant::now();
        match Cortex::<u64, Semaphore>::attach(key) {
            Err(e)
                if e.kind() == ErrorKind::NotInitialized
                    && e.to_string().contains("died before finishing") =>
            {
                if start.elapsed() < ATTACH_INIT_WAIT {
                    0
                } else {
                    3
                }
            }
            Err(_) => 4,
            Ok(_) => 5,
        }
    });
    if !skipped(outcome) {
        assert_eq!(
            outcome,
            Exit::Code(0),
            "NotInitialized, creator dead, at once (3: only after the wait, 4: another error)"
        );
    }
    Cortex::<u64, Semaphore>::remove_stale(key).unwrap();
    assert_gone(key, &[info.shmid], &sets);
}

#[test]
fn a_semaphore_excludes_and_recovers_across_pid_namespaces() {
    let key = unique_key("semaphore_other_namespace");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None).unwrap();
    // 1. A live holder here is never taken over from there: the waiter there times out.
    let guard = cortex.lock().unwrap();
    let outcome = in_another_pid_namespace(move || {
        let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
            return 2;
        };
        let code = match c.lock_timeout(Duration::from_millis(300)) {
            Err(e) if e.kind() == ErrorKind::Timeout => 0,
            Err(_) => 3,
            Ok(_) => 4,
        };
        code
    });
    if skipped(outcome) {
        return;
    }
    assert_eq!(
        outcome,
        Exit::Code(0),
        "a live holder in another namespace is kept"
    );
    drop(guard);
    // 2. Released here, it is taken there.
    let outcome = in_another_pid_namespace(move || {
        let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
            return 2;
        };
        let code = match c.lock_timeout(Duration::from_secs(5)) {
            Ok(mut g) if !g.owner_died() => {
                *g += 1;
                0
            }
            Ok(_) => 3,
            Err(_) => 4,
        };
        code
    });
    assert_eq!(outcome, Exit::Code(0));
    assert_eq!(cortex.read().unwrap(), 1);
    // 3. A holder there that dies is taken over here, and reported.
    let holding = Pipe::new();
    let child = fork(|| {
        // SAFETY: as in `in_another_pid_namespace`.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        let holder = fork(|| {
            let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
                return 2;
            };
            let Ok(mut g) = c.lock() else { return 3 };
            *g = 99;
            holding.send(1);
            park()
        });
        // Once the holder holds, kill it (dropping a Child kills and reaps it).
        if holding.recv_timeout(Duration::from_secs(30)).is_none() {
            return 5;
        }
        drop(holder);
        0
    });
    let outcome = child.wait();
    assert_eq!(outcome, Exit::Code(0));
    let guard = cortex.lock_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        guard.owner_died(),
        "the death in the other namespace is reported"
    );
    assert_eq!(*guard, 99);
    drop(guard);
    let (id, sets) = (cortex.segment_id(), cortex.semaphore_sets());
    drop(cortex);
    assert_gone(key, &[id], &sets);
}

/// The creator's liveness as the operator's view reports it (`creator_alive`), from the
/// segment of `key`.
fn creator_alive(key: i32) -> Option<bool> {
    neocortex::inspect::segment(key)
        .expect("inspect the segment")
        .neocortex
        .expect("a neocortex segment")
        .creator_alive
}

/// Removes the members set of `key`'s segment, as `ipcrm -s` would; returns its id.
fn remove_members_set(key: i32) -> i32 {
    let info = neocortex::inspect::segment(key).expect("inspect the segment");
    let set = info
        .neocortex
        .and_then(|nc| nc.members_set)
        .expect("a neocortex segment with a members set");
    // SAFETY: what `ipcrm -s` does, to this test's own set; the test checks the aftermath.
    unsafe { neocortex_sys::sem::remove(set) }.expect("remove the members set");
    set
}

/// Without the members set (removed from outside), whether the creator lives is asked of
/// its pid: by its recorded identity in the same pid namespace, by the kernel's pid where
/// the creator is in another namespace that this one can see, and not at all ("cannot
/// tell") where this namespace cannot see it.
#[test]
fn a_creator_is_judged_by_pid_when_the_members_set_is_gone() {
    let _guard = common::watchdog();
    // The same namespace: alive (this process), then dead (a child that exits).
    let key = unique_key("creator_by_pid_here");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None).unwrap();
    let set = remove_members_set(key);
    assert_eq!(creator_alive(key), Some(true), "this process made it");
    let outcome = in_another_pid_namespace(|| match creator_alive(key) {
        None => 0,
        Some(alive) => 10 + i32::from(alive),
    });
    let elsewhere = !skipped(outcome);
    if elsewhere {
        assert_eq!(
            outcome,
            Exit::Code(0),
            "cannot tell from where it is invisible"
        );
    }
    let id = cortex.segment_id();
    drop(cortex);
    assert_gone(key, &[id], &[set]);

    let key = unique_key("creator_by_pid_dead");
    let made = fork(|| match Cortex::<u64, Semaphore>::new(key, 0, None) {
        Ok(c) => match c.detach() {
            Ok(()) => 0,
            Err(_) => 3,
        },
        Err(_) => 2,
    });
    assert_eq!(made.wait(), Exit::Code(0));
    let set = remove_members_set(key);
    assert_eq!(creator_alive(key), Some(false), "its creator exited");
    let id = neocortex_sys::shm::shmget(key, 0, 0).unwrap();
    Cortex::<u64, Semaphore>::remove_stale(key).unwrap();
    assert_gone(key, &[id], &[set]);
    if !elsewhere {
        return;
    }

    // A creator in a pid namespace below this one (its pid there is not its pid here).
    let key = unique_key("creator_by_pid_below");
    let ready = Pipe::new();
    let child = fork(|| {
        // SAFETY: as in `in_another_pid_namespace`.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        // The creator (the namespace's first process) stays until this child is killed,
        // and dies with it (a test child dies with its parent).
        let _creator = fork(|| {
            let Ok(_c) = Cortex::<u64, Semaphore>::new(key, 0, None) else {
                return 2;
            };
            ready.send(1);
            park()
        });
        park()
    });
    assert_eq!(ready.recv_timeout(Duration::from_secs(30)), Some(1));
    let set = remove_members_set(key);
    assert_eq!(
        creator_alive(key),
        Some(true),
        "alive, seen through the kernel's pid"
    );
    let id = neocortex_sys::shm::shmget(key, 0, 0).unwrap();
    child.signal(libc::SIGKILL); // its namespace ends, and the creator with it
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    let deadline = Instant::now() + Duration::from_secs(10);
    while creator_alive(key) != Some(false) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        creator_alive(key),
        Some(false),
        "dead once its namespace ended"
    );
    Cortex::<u64, Semaphore>::remove_stale(key).unwrap();
    assert_gone(key, &[id], &[set]);
}
