//! The inspection API (`neocortex::inspect`): what it says about live, half-made, orphaned,
//! foreign and other users' segments, and that removal takes exactly what it may.
//!
//! Every test looks at every segment of its IPC namespace, so each runs its body in a
//! private one.
// Linux only: listing reads /proc/sysvipc.
#![cfg(target_os = "linux")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;
#[path = "../examples/custom_lock/spinlock.rs"]
mod spinlock;

use std::time::Duration;

use common::debris::{self, contents, orphan, sets, snapshot, stale};
use common::{fork, in_private_ipc_namespace, park, unique_key, Exit, Pipe};
use neocortex::inspect::{
    self, LockKind, Outcome, SegmentState, SegmentView, Shape, Verdict, BUILT_IN_LOCKS,
    MEMBERS_SET_SEMAPHORES,
};
use neocortex::{
    Cortex, CortexSync, ErrorKind, InPlace, RwSemaphore, Semaphore, SeqLock, SysvSemaphore,
};
use neocortex_sys::shm;
use spinlock::SpinLock;

fn me() -> i32 {
    std::process::id() as i32
}

#[test]
fn a_live_segment_is_described_in_full_and_never_removed() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("a_live_segment_is_described");
        let cortex: Cortex<[u32; 3], SysvSemaphore> = Cortex::new(key, [1, 2, 3], None).unwrap();
        let info = inspect::segment(key).unwrap();
        assert_eq!((info.key, info.shmid), (key, cortex.segment_id()));
        // SAFETY: geteuid takes nothing and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!((info.uid, info.creator_uid), (euid, euid));
        assert_eq!(info.mode, 0o600);
        assert_eq!(info.attached, 1);
        assert_eq!(info.attached_pids, Some(vec![me()]));
        assert_eq!(info.kernel_creator_pid, me());
        assert!(!info.pending_removal);
        assert_eq!(info.verdict, Verdict::InUse, "{}", info.reason);
        let nc = info.neocortex.clone().expect("a neocortex segment");
        assert_eq!(nc.state, SegmentState::Ready);
        assert_eq!(nc.state.as_str(), "ready");
        assert_eq!(
            (nc.type_name.as_str(), nc.lock.as_str()),
            ("[u32; 3]", "sysv-semaphore")
        );
        assert!(nc.lock_known);
        assert_eq!(nc.layout.shape, Shape::Value);
        assert_eq!(
            (
                nc.layout.element_size,
                nc.layout.element_align,
                nc.layout.len
            ),
            (12, 4, 1)
        );
        assert_eq!(nc.layout.total_size, nc.layout.data_offset + 12);
        assert!(nc.layout.lock_offset < nc.layout.data_offset);
        assert_eq!(info.size, nc.layout.total_size);
        assert_eq!((nc.creator_pid, nc.creator_alive), (me(), Some(true)));
        assert_eq!(
            (nc.owner_died, nc.dead_holder, nc.holder),
            (false, None, None)
        );
        assert!(!nc.removed);
        assert_eq!(nc.members_set, Some(cortex.members_set_id()));
        assert_eq!(nc.member_slots, Some(64));
        assert_eq!(nc.watchers, Some(0));
        assert_eq!(nc.semaphore_sets, cortex.semaphore_sets());
        assert_eq!(nc.members.len(), 1);
        assert_eq!((nc.members[0].pid, nc.members[0].creator), (me(), true));
        // The lock and the version, as they change.
        let version = nc.version;
        {
            let _held = cortex.lock().unwrap();
            let nc = inspect::segment(key).unwrap().neocortex.unwrap();
            assert_eq!(nc.holder, Some(me()));
            assert!(!nc.owner_died, "a live holder");
        }
        cortex.write([4, 5, 6]).unwrap();
        assert_eq!(
            inspect::segment(key).unwrap().neocortex.unwrap().version,
            version + 1
        );
        // Listed, and in use: removal is refused, collection finds nothing.
        let all = inspect::segments().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].shmid, info.shmid);
        assert_eq!(all[0].attached_pids, None, "segments() does not scan /proc");
        let refused = inspect::remove(key, false).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::AlreadyExists, "{refused}");
        let text = refused.to_string();
        assert!(text.contains(&format!("pids {}", me())), "{text}");
        assert!(
            !text.contains("not attached"),
            "the creator is attached: {text}"
        );
        assert!(
            text.contains("is alive") || text.contains("running"),
            "{text}"
        );
        assert!(inspect::collect(true, false).unwrap().is_empty());
        assert_eq!(cortex.read().unwrap(), [4, 5, 6]);
        // The view of the lock names its kind by the header's fingerprint.
        let view = SegmentView::open(key).unwrap();
        assert_eq!((view.key(), view.shmid()), (key, cortex.segment_id()));
        assert!(view.lock::<Semaphore>().is_none());
        assert!(
            view.lock::<RwSemaphore>().is_none(),
            "same state type, other kind"
        );
        let lock = view.lock::<SysvSemaphore>().unwrap();
        assert_eq!((lock.kind, lock.holder), ("sysv-semaphore", None));
        assert_eq!(lock.semaphore_sets, [cortex.raw_lock().set_id()]);
        assert!(format!("{:?}", LockKind::of::<SysvSemaphore>()).contains("sysv-semaphore"));
        drop(view);
        let made = common::Made::of(&cortex);
        drop(cortex);
        made.assert_gone();
        let missing = inspect::segment(key).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(
            missing.to_string().contains("nothing is on the key"),
            "{missing}"
        );
        assert_eq!(
            inspect::remove(key, true).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn stale_and_orphaned_segments_are_collected_as_asked_and_nothing_else() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = |n: &str| unique_key(&format!("collected_as_asked_{n}"));
        let sets_before = sets();
        let live: Cortex<u64, Semaphore> = Cortex::new(key("live"), 5, None).unwrap();
        let half_futex = stale::<Semaphore>(key("half_futex"));
        let half_rw = stale::<RwSemaphore>(key("half_rw"));
        let orphaned = orphan::<[u8; 16], SeqLock>(key("orphan"), [7; 16]);
        let blank = debris::foreign(key("blank"), 4096, 0);
        let foreign = debris::foreign(key("foreign"), 8192, 0xa5);
        let verdicts: Vec<(i32, Verdict)> = inspect::segments()
            .unwrap()
            .into_iter()
            .map(|s| (s.shmid, s.verdict))
            .collect();
        for (id, verdict) in [
            (live.segment_id(), Verdict::InUse),
            (half_futex, Verdict::Stale),
            (half_rw, Verdict::Stale),
            (orphaned, Verdict::Orphan),
            (blank, Verdict::Foreign),
            (foreign, Verdict::Foreign),
        ] {
            assert!(
                verdicts.contains(&(id, verdict)),
                "{id} {verdict}: {verdicts:?}"
            );
        }
        let half = inspect::segment(key("half_rw")).unwrap();
        let nc = half.neocortex.clone().unwrap();
        assert_eq!(
            (nc.state, nc.creator_alive),
            (SegmentState::Initializing, Some(false))
        );
        assert_eq!(nc.state.as_str(), "initializing");
        assert_eq!(nc.semaphore_sets.len(), 2, "members set and the lock's set");
        assert!(nc.members.is_empty(), "the dead creator's token is gone");
        let known = inspect::segment(key("orphan")).unwrap();
        assert!(
            !known.reason.contains("not one this program knows"),
            "{}",
            known.reason
        );
        let before = snapshot();

        let dry = inspect::collect(true, true).unwrap();
        let mut would: Vec<i32> = dry
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::WouldRemove))
            .map(|c| c.info.shmid)
            .collect();
        would.sort_unstable();
        let mut expected = vec![half_futex, half_rw, orphaned];
        expected.sort_unstable();
        assert_eq!(would, expected);
        assert_eq!(snapshot(), before, "a dry run removes and writes nothing");

        let first = inspect::collect(false, false).unwrap();
        assert_eq!(first.len(), 3, "{first:?}");
        for c in &first {
            match (&c.outcome, c.info.verdict) {
                (Outcome::Removed, Verdict::Stale) => {}
                (Outcome::Kept(why), Verdict::Orphan) => assert!(why.contains("orphan"), "{why}"),
                other => panic!("{other:?} for {:?}", c.info),
            }
        }
        let mut left = before.clone();
        left.remove(&half_futex);
        left.remove(&half_rw);
        assert_eq!(
            snapshot(),
            left,
            "everything else is untouched, byte for byte"
        );
        assert_eq!(
            sets().difference(&sets_before).count(),
            2,
            "the live segment's and the orphan's members sets only"
        );

        let second = inspect::collect(true, false).unwrap();
        assert_eq!(second.len(), 1);
        assert!(matches!(second[0].outcome, Outcome::Removed));
        assert_eq!(second[0].info.shmid, orphaned);
        left.remove(&orphaned);
        assert_eq!(snapshot(), left);
        assert_eq!(sets().difference(&sets_before).count(), 1, "the live one's");
        assert!(inspect::collect(true, false).unwrap().is_empty());

        debris::remove(blank, &[]);
        debris::remove(foreign, &[]);
        let made = common::Made::of(&live);
        drop(live);
        made.assert_gone();
        assert_eq!(sets(), sets_before);
        assert_eq!(common::namespace_objects().0, Vec::<i32>::new());
    });
}

/// A child that attaches to `key`, takes the lock and keeps it until killed.
fn holding<L: CortexSync<Access = InPlace>>(key: i32) -> common::Child {
    let held = Pipe::new();
    let child = fork(|| {
        let mine: Cortex<u64, L> = Cortex::attach(key).unwrap();
        let _guard = mine.lock().unwrap();
        held.send(1);
        park()
    });
    held.recv();
    child
}

/// A live holder is named; once it dies, the death is reported: by a futex lock still
/// naming it (nobody took over yet), by a SysV lock that the kernel released.
fn holders_are_named_and_deaths_reported<L: CortexSync<Access = InPlace>>(name: &str) {
    let cortex: Cortex<u64, L> = Cortex::new(unique_key(name), 1, None).unwrap();
    let key = cortex.key();
    let child = holding::<L>(key);
    let pid = child.pid();
    let nc = inspect::segment(key).unwrap().neocortex.unwrap();
    assert_eq!(
        (nc.holder, nc.owner_died, nc.dead_holder),
        (Some(pid), false, None)
    );
    assert_eq!(nc.semaphore_sets, cortex.semaphore_sets());
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    let nc = inspect::segment(key).unwrap().neocortex.unwrap();
    let still_named = L::DETECTS_DEAD_HOLDERS;
    assert_eq!(nc.holder, still_named.then_some(pid), "{name}");
    assert_eq!((nc.owner_died, nc.dead_holder), (true, Some(pid)), "{name}");
    // The next holder is told, repairs, and the report clears.
    let mut guard = cortex.lock_timeout(common::LOCK_WAIT).unwrap();
    assert!(guard.owner_died());
    guard.mark_consistent();
    drop(guard);
    let nc = inspect::segment(key).unwrap().neocortex.unwrap();
    assert_eq!(
        (nc.holder, nc.owner_died, nc.dead_holder),
        (None, false, None)
    );
    let made = common::Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// A `SeqLock` writer (here parked inside its `update` closure, holding the writer lock) is
/// named, and a `write` after its death takes over and leaves nobody named.
fn seqlock_writers_are_named() {
    let cortex: Cortex<u64, SeqLock> =
        Cortex::new(unique_key("holders_named_seqlock"), 1, None).unwrap();
    let key = cortex.key();
    let held = Pipe::new();
    let child = fork(|| {
        let mine: Cortex<u64, SeqLock> = Cortex::attach(key).unwrap();
        let _ = mine.update(|_| {
            held.send(1);
            park()
        });
        2
    });
    held.recv();
    let nc = inspect::segment(key).unwrap().neocortex.unwrap();
    assert_eq!(nc.holder, Some(child.pid()), "the writer is named");
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    cortex.write(2).unwrap();
    let nc = inspect::segment(key).unwrap().neocortex.unwrap();
    assert_eq!(nc.holder, None, "nobody holds it after the takeover");
    assert_eq!(cortex.read().unwrap(), 2);
    let made = common::Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn holders_are_named_and_those_that_died_reported() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        holders_are_named_and_deaths_reported::<Semaphore>("holders_named_futex");
        holders_are_named_and_deaths_reported::<SysvSemaphore>("holders_named_sysv");
        holders_are_named_and_deaths_reported::<RwSemaphore>("holders_named_rw");
        seqlock_writers_are_named();
    });
}

#[test]
fn the_tool_and_new_agree_on_what_is_stale() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        // Debris: the tool would remove it, and new() on its key reclaims it.
        let half_key = unique_key("agree_half");
        let half = stale::<Semaphore>(half_key);
        let dry = inspect::collect(false, true).unwrap();
        assert!(
            matches!(&dry[..], [c] if c.info.shmid == half && matches!(c.outcome, Outcome::WouldRemove)),
            "{dry:?}"
        );
        let fresh: Cortex<u64, Semaphore> = Cortex::new(half_key, 2, None).unwrap();
        assert!(shm::stat(half).is_err(), "new() reclaimed it");
        let made = common::Made::of(&fresh);
        drop(fresh);
        made.assert_gone();

        // An orphan made with another lock kind: new() and remove_stale with this lock
        // leave it, as the tool does without that lock kind.
        let orphan_key = unique_key("agree_orphan");
        let orphaned = orphan::<u64, SysvSemaphore>(orphan_key, 1);
        let before = snapshot();
        let kept = Cortex::<u64, Semaphore>::remove_stale(orphan_key).unwrap_err();
        assert_eq!(kept.kind(), ErrorKind::AlreadyExists);
        assert!(kept.to_string().contains("another lock kind"), "{kept}");
        let taken = Cortex::<u64, Semaphore>::new(orphan_key, 1, None).unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
        assert_eq!(snapshot(), before);
        let sets = inspect::segment(orphan_key)
            .unwrap()
            .neocortex
            .unwrap()
            .semaphore_sets;
        Cortex::<u64, SysvSemaphore>::remove_stale(orphan_key).unwrap();
        common::assert_gone(orphan_key, &[orphaned], &sets);

        // A creator that detached lives on: in use until it exits.
        let creator: Cortex<u64, Semaphore> =
            Cortex::new(unique_key("agree_detached"), 3, None).unwrap();
        let key = creator.key();
        let made = common::Made::of(&creator);
        creator.detach().unwrap();
        let info = inspect::segment(key).unwrap();
        assert_eq!((info.verdict, info.attached), (Verdict::InUse, 0));
        assert!(info.reason.contains("running process"), "{}", info.reason);
        let refused = inspect::remove(key, false).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("live members not attached: pids {}", me())),
            "{refused}"
        );
        assert!(
            !refused.contains("is alive"),
            "nobody is attached: {refused}"
        );
        assert!(inspect::collect(true, false).unwrap().is_empty());
        Cortex::<u64, Semaphore>::attach(key)
            .unwrap()
            .remove()
            .unwrap();
        made.assert_gone();
    });
}

#[test]
fn forced_removal_tells_the_processes_still_attached() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("forced_removal_tells");
        let id = orphan::<u64, Semaphore>(key, 9);
        let set_ids = inspect::segment(key)
            .unwrap()
            .neocortex
            .unwrap()
            .semaphore_sets;
        let (ready, go) = (Pipe::new(), Pipe::new());
        let user = fork(|| {
            let mine: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
            let seen = mine.version();
            ready.send(1);
            go.recv();
            // Waits for a change that never comes: the removal must end the wait.
            let waited = mine.wait_for_change(seen, Duration::from_secs(20));
            // The removal moved the counter to wake the waiter at once.
            if mine.version() <= seen {
                common::write_stderr("the removal did not move the change counter\n");
                return 2;
            }
            match (
                waited.map_err(|e| e.kind()),
                mine.read().map_err(|e| e.kind()),
            ) {
                (Err(ErrorKind::LockRemoved), Err(ErrorKind::LockRemoved)) => 0,
                other => {
                    common::write_stderr(&format!("the attached process saw {other:?}\n"));
                    1
                }
            }
        });
        ready.recv();
        let info = inspect::segment(key).unwrap();
        assert_eq!(info.verdict, Verdict::InUse);
        assert_eq!(info.attached_pids, Some(vec![user.pid()]));
        let refused = inspect::remove(key, false).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains(&format!("pids {}", user.pid())),
            "{refused}"
        );
        assert_eq!(contents(id), contents(id));
        go.send(1);
        common::wait_until_asleep_in(user.pid(), &[libc::SYS_futex], "waiting for a change");
        let removed = inspect::remove(key, true).unwrap();
        assert_eq!(removed.shmid, id);
        user.expect_success("the attached process saw LockRemoved");
        common::assert_gone(key, &[id], &set_ids);
    });
}

#[test]
fn foreign_segments_and_unknown_lock_kinds_are_left_alone() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let blank_key = unique_key("left_alone_blank");
        let blank = debris::foreign(blank_key, 4096, 0);
        let info = inspect::segment(blank_key).unwrap();
        assert_eq!(
            (info.verdict, info.neocortex.is_none()),
            (Verdict::Foreign, true)
        );
        assert!(
            info.reason.contains("no neocortex header"),
            "{}",
            info.reason
        );
        let refused = inspect::remove(blank_key, true).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::AlreadyExists);
        assert!(
            refused.to_string().contains("never removes a foreign"),
            "{refused}"
        );
        let tiny_key = unique_key("left_alone_tiny");
        let tiny = debris::foreign(tiny_key, 64, 1);
        assert_eq!(
            SegmentView::open(tiny_key).unwrap_err().kind(),
            ErrorKind::LayoutMismatch
        );
        assert_eq!(
            inspect::segment(tiny_key).unwrap().verdict,
            Verdict::Foreign
        );
        assert_eq!(
            SegmentView::open(0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            inspect::segment(0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );

        let spin_key = unique_key("left_alone_spin");
        let spin = orphan::<u64, SpinLock>(spin_key, 3);
        let info = inspect::segment(spin_key).unwrap();
        let nc = info.neocortex.clone().unwrap();
        assert_eq!(
            (info.verdict, nc.lock.as_str()),
            (Verdict::Orphan, "example-spinlock")
        );
        assert!(!nc.lock_known);
        assert!(
            info.reason.contains("not one this program knows"),
            "{}",
            info.reason
        );
        let kept = inspect::collect(true, false).unwrap();
        assert!(
            matches!(&kept[..], [c] if matches!(c.outcome, Outcome::Kept(_))),
            "{kept:?}"
        );
        assert_eq!(
            inspect::remove(spin_key, true).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        // Told about the lock kind, the inspection knows it and removes the segment.
        let locks: Vec<LockKind> = BUILT_IN_LOCKS
            .iter()
            .copied()
            .chain([LockKind::of::<SpinLock>()])
            .collect();
        assert_eq!(LockKind::of::<SpinLock>().name(), "example-spinlock");
        let known = inspect::segment_with(spin_key, &locks).unwrap();
        assert!(known.neocortex.unwrap().lock_known);
        let members = known_sets(spin_key, &locks);
        inspect::remove_with(spin_key, false, &locks).unwrap();
        common::assert_gone(spin_key, &[spin], &members);
        debris::remove(blank, &[]);
        debris::remove(tiny, &[]);
    });
}

fn known_sets(key: i32, locks: &[LockKind]) -> Vec<i32> {
    inspect::segment_with(key, locks)
        .unwrap()
        .neocortex
        .unwrap()
        .semaphore_sets
}

#[test]
fn another_users_segments_are_never_removed() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    in_private_ipc_namespace(|| {
        let key = unique_key("another_users_segments");
        let child = fork(move || {
            if !common::become_nobody() {
                return 3;
            }
            match Cortex::<u64, SysvSemaphore>::new(key, 1, None) {
                Ok(c) => {
                    std::mem::forget(c);
                    0
                }
                Err(_) => 2,
            }
        });
        child.expect_success("nobody's orphan");
        let info = inspect::segment(key).unwrap();
        assert_eq!(
            (info.uid, info.verdict),
            (common::NOBODY, Verdict::OtherUser)
        );
        let nc = info.neocortex.clone().expect("root reads it");
        assert_eq!(nc.creator_alive, Some(false));
        let before = snapshot();
        for force in [false, true] {
            let refused = inspect::remove(key, force).unwrap_err();
            assert!(refused.to_string().contains("another user"), "{refused}");
        }
        assert!(inspect::collect(true, false).unwrap().is_empty());
        assert_eq!(snapshot(), before);
        debris::remove(info.shmid, &nc.semaphore_sets);
        common::assert_gone(key, &[info.shmid], &nc.semaphore_sets);

        // A segment made by this user but handed to another (IPC_SET) is theirs now.
        let handed_key = unique_key("another_users_handed");
        let handed = orphan::<u64, SysvSemaphore>(handed_key, 2);
        let sets = inspect::segment(handed_key)
            .unwrap()
            .neocortex
            .unwrap()
            .semaphore_sets;
        // SAFETY: shmid_ds is plain old data; all zeros is a valid value.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: IPC_STAT writes one shmid_ds into the buffer this test owns.
        assert_eq!(unsafe { libc::shmctl(handed, libc::IPC_STAT, &mut ds) }, 0);
        ds.shm_perm.uid = common::NOBODY;
        shm::set(handed, &ds).unwrap();
        let info = inspect::segment(handed_key).unwrap();
        assert_eq!((info.uid, info.creator_uid), (common::NOBODY, 0));
        assert_eq!(info.verdict, Verdict::OtherUser, "{}", info.reason);
        assert!(inspect::remove(handed_key, true).is_err());
        assert!(inspect::collect(true, false).unwrap().is_empty());
        debris::remove(handed, &sets);

        // Another user sees this user's segment from what the kernel lists, unmapped.
        let mine: Cortex<u64, Semaphore> =
            Cortex::new(unique_key("another_users_view"), 4, None).unwrap();
        let (my_key, my_id) = (mine.key(), mine.segment_id());
        let my_size = shm::stat(my_id).unwrap().size;
        let looker = fork(move || {
            if !common::become_nobody() {
                return 3;
            }
            let Ok(info) = inspect::segment(my_key) else {
                return 4;
            };
            let listed = inspect::segments().unwrap_or_default();
            let seen = (
                info.shmid,
                info.uid,
                info.size,
                info.verdict,
                info.neocortex.is_none(),
            );
            if seen != (my_id, 0, my_size, Verdict::OtherUser, true)
                || !listed.iter().any(|s| s.shmid == my_id)
            {
                common::write_stderr(&format!("nobody saw {seen:?}\n"));
                return 5;
            }
            match inspect::remove(my_key, true) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => 0,
                other => {
                    common::write_stderr(&format!("nobody's rm: {other:?}\n"));
                    6
                }
            }
        });
        looker.expect_success("nobody inspects root's segment");
        let made = common::Made::of(&mine);
        drop(mine);
        made.assert_gone();
    });
}

#[test]
fn limits_and_usage_count_this_namespace() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let limits = inspect::limits().unwrap();
        let sem = std::fs::read_to_string("/proc/sys/kernel/sem").unwrap();
        let fields: Vec<u64> = sem.split_whitespace().map(|f| f.parse().unwrap()).collect();
        assert_eq!(
            [limits.semmsl, limits.semmns, limits.semopm, limits.semmni],
            fields[..]
        );
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(limits.shmmni, read("/proc/sys/kernel/shmmni"));
        assert_eq!(limits.shmmax, read("/proc/sys/kernel/shmmax"));
        assert_eq!(limits.shmall, read("/proc/sys/kernel/shmall"));
        assert!(limits.page_size >= 4096);
        assert_eq!(inspect::usage().unwrap(), Default::default());
        let cortex: Cortex<[u8; 5000], Semaphore> =
            Cortex::new_zeroed(unique_key("limits_and_usage"), None).unwrap();
        let usage = inspect::usage().unwrap();
        let size = inspect::segment(cortex.key()).unwrap().size;
        assert_eq!(
            (usage.segments, usage.segment_bytes, usage.largest_segment),
            (1, size, size)
        );
        assert_eq!(usage.segment_pages, size.div_ceil(limits.page_size));
        assert_eq!(
            (usage.semaphore_sets, usage.semaphores, usage.largest_set),
            (1, MEMBERS_SET_SEMAPHORES, MEMBERS_SET_SEMAPHORES)
        );
        let made = common::Made::of(&cortex);
        drop(cortex);
        made.assert_gone();
        assert_eq!(Verdict::Stale.to_string(), "stale");
        let names: Vec<&str> = [
            Verdict::InUse,
            Verdict::Stale,
            Verdict::Orphan,
            Verdict::Foreign,
            Verdict::OtherUser,
            Verdict::Unknown,
        ]
        .iter()
        .map(|v| v.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "in-use",
                "stale",
                "orphan",
                "foreign",
                "other-user",
                "unknown"
            ]
        );
    });
}
