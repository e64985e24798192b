//! `SeqLock` across processes (issue 9): readers never see a torn value and never write
//! shared memory; a writer that dies in the middle of a write makes readers report
//! `OwnerDied` (never a torn value, never a hang), `update()` refuses the torn value and
//! `write()` repairs it; writers lose no update; a removed segment is `LockRemoved`.
//!
//! Not applicable to `SeqLock`: `try_lock`, `lock_timeout` and zero timeouts (a `SeqLock`
//! segment has no guards and no timed access: `read`, `write` and `update` are its only
//! ways in; `tests/ui/fail/seqlock_has_no_guards.rs` in neocortex-core proves `lock()` does
//! not exist).

mod common;

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use common::{fork, unique_key, Exit, Made, Pipe};
use neocortex::{Cortex, CortexBuilder, CortexError, ErrorKind, SeqLock};

/// A 4 KiB value that the writer keeps all-equal: any mix of two writes is visible.
type Page = [u64; 512];

/// How long the writer and the readers run side by side.
const RACE: Duration = Duration::from_secs(1);

/// Whether every word of `v` is the same.
fn whole(v: &[u64]) -> bool {
    v.iter().all(|&w| w == v[0])
}

#[test]
fn one_writer_three_readers_never_torn_and_readers_never_write_shared_memory() {
    let _guard = common::watchdog();
    let key = unique_key("seqlock_one_writer_three_readers");
    let cortex: Cortex<Page, SeqLock> = Cortex::new(key, [0; 512], None).unwrap();
    let start = Pipe::new();
    let writes = Pipe::new();
    let writer = fork(|| {
        let Ok(c) = Cortex::<Page, SeqLock>::attach(key) else {
            return 2;
        };
        start.recv();
        let end = Instant::now() + RACE;
        let mut n = 0u64;
        while Instant::now() < end {
            n += 1;
            if c.write([n; 512]).is_err() {
                return 3;
            }
        }
        writes.send_u64(n);
        0
    });
    let reports: Vec<Pipe> = (0..3).map(|_| Pipe::new()).collect();
    let readers: Vec<_> = reports
        .iter()
        .map(|report| {
            fork(|| {
                let Ok(c) = Cortex::<Page, SeqLock>::attach(key) else {
                    return 2;
                };
                // From here on, any store of this process into the segment (its header, the
                // lock word, the value) kills it with SIGSEGV.
                if !common::mapping::make_mapping_read_only(key) {
                    return 3;
                }
                start.recv();
                let end = Instant::now() + RACE;
                let (mut reads, mut changes, mut last) = (0u64, 0u64, 0u64);
                while Instant::now() < end {
                    let Ok(v) = c.read() else { return 4 };
                    if !whole(&v) {
                        return 5; // torn
                    }
                    if v[0] < last {
                        return 6; // an older value after a newer one
                    }
                    changes += u64::from(v[0] != last);
                    last = v[0];
                    reads += 1;
                }
                report.send_u64(reads);
                report.send_u64(changes);
                0
            })
        })
        .collect();
    start.release(4);
    // Exits first (the reports wait in the pipes): a reader that died says how.
    writer.expect_success("the writer");
    for (i, reader) in readers.into_iter().enumerate() {
        let pid = reader.pid();
        match reader.wait() {
            Exit::Code(0) => {}
            Exit::Signal(libc::SIGSEGV) => {
                panic!("reader {i} (pid {pid}) wrote to its read-only mapping of the segment")
            }
            Exit::Code(5) => panic!("reader {i} read a torn value"),
            other => panic!("reader {i} failed: {other:?}"),
        }
    }
    let written = writes.recv_u64();
    let seen: Vec<(u64, u64)> = reports
        .iter()
        .map(|r| (r.recv_u64(), r.recv_u64()))
        .collect();
    assert!(written > 0, "the writer made progress");
    for (i, &(reads, changes)) in seen.iter().enumerate() {
        assert!(reads > 0, "reader {i} made progress");
        assert!(
            changes > 0,
            "reader {i} saw the writer's writes ({reads} reads)"
        );
    }
    // Only the writes moved the version: the readers' many reads did not.
    assert_eq!(cortex.version(), written);
    assert_eq!(cortex.read().unwrap(), [written; 512]);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn four_writers_updating_lose_no_update() {
    let _guard = common::watchdog();
    const PER_CHILD: u64 = 5_000;
    let key = unique_key("seqlock_four_writers_updating");
    let cortex: Cortex<u64, SeqLock> = Cortex::new(key, 0, None).unwrap();
    let start = Pipe::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                let Ok(c) = Cortex::<u64, SeqLock>::attach(key) else {
                    return 2;
                };
                start.recv();
                for i in 0..PER_CHILD {
                    let updated = c.update(|v| {
                        let seen = *v;
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                        *v = seen + 1;
                    });
                    if updated.is_err() {
                        return 3;
                    }
                }
                0
            })
        })
        .collect();
    start.release(4);
    for child in children {
        child.expect_success("update under the writer lock");
    }
    assert_eq!(cortex.read().unwrap(), 4 * PER_CHILD);
    assert_eq!(cortex.version(), 4 * PER_CHILD);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn a_removed_segment_is_lock_removed_for_read_write_and_update() {
    let _guard = common::watchdog();
    let key = unique_key("seqlock_removed_segment");
    let owner: Cortex<Page, SeqLock> = Cortex::new(key, [1; 512], None).unwrap();
    let made = Made::of(&owner);
    let attached = Pipe::new();
    let removed = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Cortex::<Page, SeqLock>::attach(key) else {
            return 2;
        };
        if !matches!(c.read(), Ok(v) if v == [1; 512]) {
            return 3;
        }
        attached.send(1);
        removed.recv();
        let kinds = [
            c.read().map(drop),
            c.write([2; 512]),
            c.update(|v| v[0] = 3),
        ]
        .map(|r| r.map_err(|e| e.kind()));
        if kinds != [Err(ErrorKind::LockRemoved); 3] {
            common::write_stderr(&format!("after removal: {kinds:?}\n"));
            return 4;
        }
        0
    });
    attached.recv();
    owner.remove().unwrap();
    removed.send(1);
    child.expect_success("every access after removal is LockRemoved");
    made.assert_gone();
}

// ---------------------------------------------------------------------------------------
// A writer that dies in the middle of a write.
// ---------------------------------------------------------------------------------------

/// A value larger than two pages, so that a whole page lies inside `update`'s copy of it.
type Big = [u64; 2048];

/// The pipe a writer's SIGSEGV handler reports on.
static FAULT_REPORT: AtomicI32 = AtomicI32::new(-1);

/// SIGSEGV handler of the dying writer: says so on the pipe, then waits to be killed. It
/// runs in the middle of the library's copy of the value into the segment, with the change
/// counter odd.
extern "C" fn report_and_park(_: libc::c_int) {
    let byte = 1u8;
    // SAFETY: write(2) is async-signal-safe; one byte from a live local to our pipe.
    unsafe {
        libc::write(
            FAULT_REPORT.load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        )
    };
    loop {
        // SAFETY: pause(2) is async-signal-safe and takes nothing.
        unsafe { libc::pause() };
    }
}

/// Makes a writer die in the middle of a write: its `update` closure fills the library's
/// copy of the value with `new` and takes away read access to one page in the middle of
/// it, so the library's word-by-word store into the segment faults half-way, with the
/// change counter odd. The fault handler parks it; `while_stuck` runs then (the writer
/// alive, the value half-written); then the writer is SIGKILLed and reaped.
fn kill_a_writer_mid_write<R>(key: i32, new: u64, while_stuck: impl FnOnce() -> R) -> R {
    let faulted = Pipe::new();
    let writer = fork(|| {
        FAULT_REPORT.store(faulted.write_fd(), Ordering::Relaxed);
        // SAFETY: a zeroed sigaction is a valid starting point; the handler is set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = report_and_park as *const () as usize;
        // SAFETY: installs an async-signal-safe handler for SIGSEGV in this child.
        if unsafe { libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()) } != 0 {
            return 2;
        }
        let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
            return 3;
        };
        let _ = c.update(|v| {
            v.fill(new);
            let page = 4096;
            let start = v.as_ptr() as usize;
            // A page past the first word, so that some words are stored before the fault.
            let hole = (start + 8).div_ceil(page) * page;
            assert!(hole + page <= start + std::mem::size_of_val(v));
            // SAFETY: `hole..hole + page` lies inside the library's private copy of the
            // value, which only its copy into the segment reads next: that read faults,
            // which is the point; this child never returns from the fault.
            let ret = unsafe { libc::mprotect(hole as *mut libc::c_void, page, libc::PROT_NONE) };
            assert_eq!(ret, 0);
        });
        4 // the write went through: it should have faulted
    });
    assert_eq!(
        faulted.recv_timeout(common::WATCHDOG),
        Some(1),
        "the writer never faulted in the middle of its write"
    );
    let result = while_stuck();
    writer.signal(libc::SIGKILL);
    assert_eq!(writer.wait(), Exit::Signal(libc::SIGKILL));
    result
}

/// Starts `n` readers that attach and then `read()`: each exits 0 when it got `OwnerDied`,
/// 5 for a torn value, 6 for a whole value, 7 for another error.
fn readers_expecting_owner_died(key: i32, n: usize, ready: &Pipe) -> Vec<common::Child> {
    (0..n)
        .map(|_| {
            fork(|| {
                let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
                    return 2;
                };
                ready.send(1);
                match c.read() {
                    Err(e) if e.kind() == ErrorKind::OwnerDied => 0,
                    Ok(v) if !whole(&v) => 5,
                    Ok(_) => 6,
                    Err(_) => 7,
                }
            })
        })
        .collect()
}

#[test]
fn a_writer_killed_mid_write_makes_readers_report_owner_died_and_write_repairs() {
    let _guard = common::watchdog();
    let key = unique_key("seqlock_writer_killed_mid_write");
    let cortex: Cortex<Big, SeqLock> = Cortex::new(key, [1; 2048], None).unwrap();
    let before = cortex.version();

    // Readers already waiting when the writer dies, and readers that come after.
    let ready = Pipe::new();
    let stuck = Pipe::new();
    let early = fork(|| {
        // A reader that starts while the writer is stuck mid-write (alive): it must wait,
        // and give up with OwnerDied only once the writer is dead.
        let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
            return 2;
        };
        stuck.recv();
        ready.send(1);
        match c.read() {
            Err(e) if e.kind() == ErrorKind::OwnerDied => 0,
            Ok(v) if !whole(&v) => 5,
            Ok(_) => 6,
            Err(_) => 7,
        }
    });
    kill_a_writer_mid_write(key, 2, || {
        // The writer is alive and stuck with the counter odd: a reader waits for it.
        stuck.send(1);
        ready.recv();
        let naps = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
        common::wait_until_asleep_in(early.pid(), &naps, "waiting for the stuck writer");
        // Long past its first spins and checks, the reader still naps between looks at the
        // writer's liveness (it neither gave up nor spins without looking).
        std::thread::sleep(Duration::from_millis(50));
        common::wait_until_asleep_in(early.pid(), &naps, "still waiting, 50 ms later");
    });
    assert_eq!(
        early.wait(),
        Exit::Code(0),
        "a reader waiting for the writer gets OwnerDied once it dies"
    );
    let late = readers_expecting_owner_died(key, 3, &ready);
    for child in late {
        let pid = child.pid();
        assert_eq!(
            child.wait(),
            Exit::Code(0),
            "reader {pid} after the death: OwnerDied (5: torn, 6: whole, 7: other error)"
        );
    }
    assert_eq!(cortex.read().unwrap_err().kind(), ErrorKind::OwnerDied);
    assert_eq!(
        cortex.update(|v| v[0] = 9).unwrap_err().kind(),
        ErrorKind::OwnerDied,
        "update() refuses a torn value"
    );
    // (What a reader gets after this refused update is `a_refused_update_...` below.)

    // write() repairs: readers in other processes read the new value.
    cortex.write([3; 2048]).unwrap();
    assert_eq!(cortex.read().unwrap(), [3; 2048]);
    let checked = fork(|| {
        let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
            return 2;
        };
        match c.read() {
            Ok(v) if v == [3; 2048] => 0,
            Ok(_) => 3,
            Err(_) => 4,
        }
    });
    checked.expect_success("a reader after the repair");
    assert!(cortex.version() > before);
    cortex.update(|v| v[0] = 4).unwrap();
    assert_eq!(cortex.read().unwrap()[..2], [4, 3]);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn a_refused_update_leaves_readers_reporting_owner_died() {
    let _guard = common::watchdog();
    let key = unique_key("seqlock_refused_update_then_read");
    let cortex: Cortex<Big, SeqLock> = Cortex::new(key, [1; 2048], None).unwrap();
    kill_a_writer_mid_write(key, 2, || ());
    assert_eq!(
        cortex.update(|v| v[0] = 9).unwrap_err().kind(),
        ErrorKind::OwnerDied
    );
    // This process lives on (and keeps its member token): a reader must still be told that
    // the value is torn, not wait for a writer that is not writing.
    let ready = Pipe::new();
    let readers = readers_expecting_owner_died(key, 1, &ready);
    for child in readers {
        assert_eq!(
            child.wait_timeout(Duration::from_secs(5)),
            Exit::Code(0),
            "a reader after a refused update gets OwnerDied"
        );
    }
    cortex.write([3; 2048]).unwrap();
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn a_writer_killed_in_its_update_closure_leaves_the_value_whole() {
    // `update` runs its closure on a copy, before the counter goes odd: a writer killed
    // there has changed nothing. Readers read the old value (no OwnerDied, no wait) and the
    // next writer takes the lock over from the dead one and goes on.
    let _guard = common::watchdog();
    let key = unique_key("seqlock_writer_killed_in_closure");
    let cortex: Cortex<Big, SeqLock> = Cortex::new(key, [1; 2048], None).unwrap();
    let inside = Pipe::new();
    let writer = fork(|| {
        let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
            return 2;
        };
        let _ = c.update(|v| {
            v.fill(2);
            inside.send(1);
            common::park()
        });
        3
    });
    inside.recv();
    writer.signal(libc::SIGKILL);
    assert_eq!(writer.wait(), Exit::Signal(libc::SIGKILL));
    let reader = fork(|| {
        let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
            return 2;
        };
        match c.read() {
            Ok(v) if v == [1; 2048] => 0,
            Ok(_) => 3,
            Err(_) => 4,
        }
    });
    assert_eq!(
        reader.wait_timeout(Duration::from_secs(10)),
        Exit::Code(0),
        "a reader reads the old, whole value"
    );
    let version = cortex.version();
    cortex.update(|v| v[0] = 5).unwrap();
    assert_eq!(cortex.read().unwrap()[..2], [5, 1]);
    assert_eq!(cortex.version(), version + 1);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// A member slot is free again once its holder dies, and the next process to join may get
/// it. A torn value must still read as a dead writer's, not as the new member's: readers
/// and writers check the writer's token (slot and tag), which the slot no longer holds, and
/// name no pid (-1), since the slot's record now names the new member.
#[test]
fn a_dead_writers_slot_taken_by_another_process_still_reads_as_dead() {
    let _guard = common::watchdog();
    let key = unique_key("seqlock_dead_writer_slot_reused");
    // Two slots: this process's and the writer's; the next member can only get the writer's.
    let cortex: Cortex<Big, SeqLock> = CortexBuilder::new([1; 2048])
        .key(key)
        .max_handles(2)
        .with_default_lock()
        .unwrap();
    cortex.write([1; 2048]).unwrap(); // this process holds its slot from here on
    kill_a_writer_mid_write(key, 2, || ());
    let next = fork(|| {
        let Ok(c) = Cortex::<Big, SeqLock>::attach(key) else {
            return 2;
        };
        // Joins (the dead writer's slot, the only free one), then finds the value torn.
        match c.update(|v| v[0] = 9) {
            Err(CortexError::OwnerDied { pid: -1, .. }) => 0,
            Err(CortexError::OwnerDied { .. }) => 3,
            Ok(()) => 4,
            Err(_) => 5,
        }
    });
    assert_eq!(
        next.wait(),
        Exit::Code(0),
        "the new member's update: OwnerDied naming no pid (3: a pid, 4: Ok, 5: other error)"
    );
    match cortex.read() {
        Err(CortexError::OwnerDied { pid: -1, .. }) => {}
        other => panic!("a reader is told of a dead writer it cannot name: {other:?}"),
    }
    cortex.write([3; 2048]).unwrap();
    assert_eq!(cortex.read().unwrap(), [3; 2048]);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}
