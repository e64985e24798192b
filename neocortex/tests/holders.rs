//! Who held the lock when it died, as the next holder is told: the pid when the segment
//! knows it, -1 when it does not, a warning in the log either way; and a healthy value
//! never reports a death.
#![cfg(target_os = "linux")]

mod common;

use common::{capture_logs, fork, unique_key, Exit, Made, Pipe};
use neocortex::inspect::SegmentView;
use neocortex::{
    Cortex, CortexBuilder, CortexError, CortexSync, InPlace, Semaphore, SysvSemaphore,
};
use neocortex_sys::sem;

/// A child that attaches to `key`, takes the lock and is killed holding it; returns its pid
/// and the holder the inspection API named while it held the lock.
fn die_holding<L: CortexSync<Access = InPlace>>(key: i32) -> (i32, Option<i32>) {
    let held = Pipe::new();
    let child = fork(|| {
        let Ok(cortex) = Cortex::<u64, L>::attach(key) else {
            return 2;
        };
        let Ok(mut guard) = cortex.lock() else {
            return 3;
        };
        *guard = 13;
        held.send(1);
        common::park()
    });
    assert_eq!(held.recv(), 1, "the child took the lock");
    let pid = child.pid();
    let named = SegmentView::open(key)
        .expect("inspect the segment")
        .lock::<L>()
        .expect("the segment's own lock kind")
        .holder;
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    (pid, named)
}

/// The member slots of `cortex`'s members set that hold a token right now.
fn taken_slots<L: CortexSync>(cortex: &Cortex<u64, L>, slots: usize) -> Vec<usize> {
    // The set holds the reaper (0), the watcher count (1), then one semaphore per slot.
    let mut values = vec![0u16; slots + 2];
    sem::get_all(cortex.members_set_id(), &mut values).expect("GETALL on the members set");
    (0..slots).filter(|&s| values[s + 2] != 0).collect()
}

/// The pid an `OwnerDied` error names.
fn dead_pid(error: &CortexError) -> i32 {
    match error {
        CortexError::OwnerDied { pid, .. } => *pid,
        other => panic!("expected OwnerDied, got {other:?}"),
    }
}

#[test]
fn a_dead_holder_is_named_by_pid_and_logged() {
    let _guard = common::watchdog();
    let key = unique_key("a_dead_holder_is_named_by_pid_and_logged");
    let cortex: Cortex<u64, SysvSemaphore> = Cortex::new(key, 0, None).unwrap();
    let (pid, named) = die_holding::<SysvSemaphore>(key);
    assert_eq!(named, Some(pid), "the live holder is named");

    // The kernel undid the dead holder's hold; the next holder finds its pid left behind.
    let (guard, events) = capture_logs(|| cortex.lock_timeout(common::LOCK_WAIT));
    let guard = guard.expect("the kernel released the dead holder's lock");
    assert!(guard.owner_died(), "the next guard is told");
    drop(guard);
    let warned = events.iter().any(|e| {
        e.level == tracing::Level::WARN
            && e.text.contains("died holding the lock")
            && e.text.contains(&format!("dead_pid={pid}"))
    });
    assert!(
        warned,
        "a takeover is logged as a warning naming the pid: {events:?}"
    );
    assert_eq!(dead_pid(&cortex.read().unwrap_err()), pid);

    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// A segment notes the pids of its first 64 member slots only; a holder in a later slot that
/// dies is reported as pid -1 (unknown). `shared_first`: the first access after the death
/// is a shared guard (else an exclusive one): each path records the takeover itself.
fn unknown_holder_is_reported(name: &str, shared_first: bool) {
    const SLOTS: usize = 4094;
    let key = unique_key(name);
    let cortex: Cortex<u64, Semaphore> = CortexBuilder::new(0u64)
        .key(key)
        .max_handles(SLOTS as u16)
        .with_default_lock()
        .expect("create");
    let mine = taken_slots(&cortex, SLOTS);
    // A process's slot is spread over the free ones; retry the rare child that lands in
    // the first 64 (its pid is known then, which is checked too).
    let mut unknown_seen = false;
    for attempt in 0..20 {
        let (pid, named) = die_holding::<Semaphore>(key);
        assert_eq!(
            taken_slots(&cortex, SLOTS),
            mine,
            "the kernel freed the dead child's slot"
        );
        let told = if shared_first {
            cortex.lock_shared().expect("a shared guard").owner_died()
        } else {
            cortex.lock().expect("an exclusive guard").owner_died()
        };
        assert!(told, "attempt {attempt}: the first guard is told");
        let reported = dead_pid(&cortex.read().expect_err("read refuses an unrepaired value"));
        assert!(
            reported == pid || reported == -1,
            "attempt {attempt}: reported {reported}, the holder was {pid}"
        );
        assert_eq!(
            named,
            Some(reported),
            "the live holder was named as its death is"
        );
        {
            let mut guard = cortex.lock().expect("an exclusive guard");
            assert!(guard.owner_died(), "every guard is told until repaired");
            assert_eq!(*guard, 13, "the dead holder's write is there");
            *guard = 0;
            guard.mark_consistent();
        }
        assert!(
            !cortex.lock_shared().expect("a shared guard").owner_died(),
            "repaired"
        );
        if reported == -1 {
            unknown_seen = true;
            break;
        }
    }
    assert!(
        unknown_seen,
        "20 children all landed in the first 64 of {SLOTS} slots"
    );

    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn a_dead_holder_beyond_the_noted_slots_is_unknown_to_a_shared_guard() {
    let _guard = common::watchdog();
    unknown_holder_is_reported("a_dead_holder_beyond_the_noted_slots::shared", true);
}

#[test]
fn a_dead_holder_beyond_the_noted_slots_is_unknown_to_an_exclusive_guard() {
    let _guard = common::watchdog();
    unknown_holder_is_reported("a_dead_holder_beyond_the_noted_slots::exclusive", false);
}

#[test]
fn a_healthy_value_reports_no_death_and_handles_and_guards_show_themselves() {
    let _guard = common::watchdog();
    let key = unique_key("a_healthy_value_reports_no_death");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 5, None).unwrap();
    {
        let shared = cortex.lock_shared().unwrap();
        assert!(!shared.owner_died());
        assert_eq!(
            format!("{shared:?}"),
            "CortexReadGuard { value: 5, owner_died: false }"
        );
    }
    {
        let guard = cortex.lock().unwrap();
        assert!(!guard.owner_died());
        assert_eq!(
            format!("{guard:?}"),
            "CortexGuard { value: 5, owner_died: false }"
        );
    }
    let shown = format!("{cortex:?}");
    for part in [
        format!("shmid: {}", cortex.segment_id()),
        "type: \"u64\"".to_owned(),
        "owner: true".to_owned(),
    ] {
        assert!(shown.contains(&part), "{shown} lacks {part}");
    }
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}
