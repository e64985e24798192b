//! Soundness at run time, across processes: a child (made by `fork` or by a raw `clone`
//! that skips the C library) that drops an inherited guard does not release its parent's
//! lock; values round-trip through a segment byte for byte (no padding, no stale bytes);
//! a world-writable segment is refused by `attach` and taken only through
//! `attach_world_writable`; and reclaiming a stale segment whose header puts the lock state
//! at an odd offset neither touches that state nor hides what it leaves.
//!
//! "A value written through `write()` leaves no stale padding bytes" is not applicable as
//! such: `ShmSafe` types have no padding (`shm_safe!` refuses it at compile time, see
//! `neocortex-core/tests/ui/fail/padding_*.rs`); what is tested instead is that every byte
//! of a value, tail bytes of odd sizes included, arrives in the segment as written.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::mapping::RawMapping;
use common::{fork, unique_key, Exit, Made, Pipe};
use neocortex::{
    shm_safe, Cortex, CortexSync, ErrorKind, FixedVec, InPlace, RwSemaphore, Semaphore,
    SemaphorePermission, SemaphoreSettings, SeqLock, ShmSafe, SysvSemaphore,
};

/// How a child is made.
#[derive(Clone, Copy, Debug)]
enum Birth {
    /// The C library's `fork`.
    Fork,
    /// `clone(SIGCHLD)` as a raw system call: no fork handlers run, nothing of the C
    /// library's notices the new process.
    RawClone,
}

/// Runs `body` in a child made by `birth`; the child leaves with `_exit(body())`. Call it
/// from a single-threaded process only (a forked test child): a raw clone of a
/// multi-threaded one could inherit a lock another thread held.
fn spawn(birth: Birth, body: impl FnOnce() -> i32) -> libc::pid_t {
    let pid = match birth {
        // SAFETY: the child runs `body` (crate and system calls) and leaves with `_exit`.
        Birth::Fork => unsafe { libc::fork() },
        // SAFETY: as above; with a null stack the child runs on a copy of ours, as after
        // fork, and only SIGCHLD is asked for (no shared memory, files or signal handlers).
        Birth::RawClone => unsafe {
            libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) as libc::pid_t
        },
    };
    assert!(
        pid >= 0,
        "{birth:?} failed: {}",
        std::io::Error::last_os_error()
    );
    if pid == 0 {
        // A child left behind by a failing test must not outlive it.
        // SAFETY: PR_SET_PDEATHSIG takes a signal number.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // A panic must not unwind into the copy of the parent's stack (the test harness).
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: leaves the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` (a child of this process) for at most 30 s.
fn reap(pid: libc::pid_t) -> Exit {
    let started = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if ret == pid {
            return if libc::WIFEXITED(status) {
                Exit::Code(libc::WEXITSTATUS(status))
            } else {
                Exit::Signal(libc::WTERMSIG(status))
            };
        }
        if started.elapsed() > common::WATCHDOG {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Exit::Signal(libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a third process finds when it tries the lock of `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Held,
    Free,
    Failed,
}

fn probe<L: CortexSync<Access = InPlace>>(key: i32) -> Probe {
    let child = fork(|| {
        let Ok(c) = Cortex::<u64, L>::attach(key) else {
            return 3;
        };
        let found = match c.try_lock() {
            Ok(None) => 1,
            Ok(Some(_)) => 2,
            Err(_) => 3,
        };
        found
    });
    match child.wait() {
        Exit::Code(1) => Probe::Held,
        Exit::Code(2) => Probe::Free,
        _ => Probe::Failed,
    }
}

/// A parent holds the lock; its child, made by `birth`, drops its copies of the guard and
/// of the owning handle. A third process must find the lock still held while that child
/// lives (a `SEM_UNDO` release would be undone at its exit) and after it exits; once the
/// parent lets go it is free, and the value and the segment are the parent's as before.
fn an_inherited_guard_is_not_released_by_a_child<L: CortexSync<Access = InPlace>>(
    name: &str,
    birth: Birth,
) {
    let key = unique_key(name);
    // All in a forked, single-threaded process: see `spawn`.
    let outer = fork(move || {
        let Ok(owner) = Cortex::<u64, L>::new(key, 11, None) else {
            return 2;
        };
        let made = Made::of(&owner);
        // Raw slots let the child drop its copies while the parent's stay untouched.
        let cortex: *mut Option<Cortex<u64, L>> = Box::into_raw(Box::new(Some(owner)));
        // SAFETY: `cortex` points to a live box, freed below after the guard made from it.
        let Ok(guard) = unsafe { (*cortex).as_ref() }.map_or(Err(()), |c| c.lock().map_err(drop))
        else {
            // SAFETY: the box from above, which nothing borrows any more (no guard).
            drop(unsafe { Box::from_raw(cortex) });
            return 3;
        };
        let guard: *mut Option<_> = Box::into_raw(Box::new(Some(guard)));
        let (dropped, go) = (Pipe::new(), Pipe::new());
        let child = spawn(birth, || {
            // SAFETY: the child's copies of both boxes; the guard goes first.
            unsafe { drop((*guard).take()) };
            // SAFETY: as above.
            unsafe { drop((*cortex).take()) };
            dropped.send(1);
            go.recv();
            0
        });
        dropped.recv();
        // Every check runs and everything is released whatever they find, so that a failing
        // run leaves nothing behind either.
        let while_alive = probe::<L>(key);
        go.send(1);
        let child_exit = reap(child);
        let after_exit = probe::<L>(key);
        // SAFETY: the parent's own boxes from `Box::into_raw` above, freed once, the guard
        // before the handle it borrows.
        drop(unsafe { Box::from_raw(guard) });
        let after_release = probe::<L>(key);
        // SAFETY: as above.
        let cortex = unsafe { Box::from_raw(cortex) };
        let value = (*cortex).as_ref().and_then(|c| c.read().ok());
        drop(cortex);
        made.assert_gone();
        match (while_alive, child_exit, after_exit, after_release, value) {
            (Probe::Held, Exit::Code(0), Probe::Held, Probe::Free, Some(11)) => 0,
            (Probe::Held, _, Probe::Held, _, _) => {
                common::write_stderr(&format!(
                    "child {child_exit:?}, then the lock {after_release:?}, value {value:?}\n"
                ));
                5
            }
            (Probe::Held, ..) => 6,
            _ => 4,
        }
    });
    assert_eq!(
        outer.wait(),
        Exit::Code(0),
        "{birth:?}: 4: the lock was free while the child lived, 6: after it exited (the \
         child released its parent's lock); 5: the child failed, or the parent's lock or \
         value is wrong afterwards"
    );
}

macro_rules! inherited_guards {
    ($($test:ident: $lock:ty, $birth:expr;)*) => {
        $(
            #[test]
            fn $test() {
                let _guard = common::watchdog();
                an_inherited_guard_is_not_released_by_a_child::<$lock>(stringify!($test), $birth);
            }
        )*
    };
}

inherited_guards! {
    a_forked_child_keeps_the_parents_semaphore_held: Semaphore, Birth::Fork;
    a_raw_clone_child_keeps_the_parents_semaphore_held: Semaphore, Birth::RawClone;
    a_forked_child_keeps_the_parents_sysv_semaphore_held: SysvSemaphore, Birth::Fork;
    a_raw_clone_child_keeps_the_parents_sysv_semaphore_held: SysvSemaphore, Birth::RawClone;
    a_forked_child_keeps_the_parents_rw_semaphore_held: RwSemaphore, Birth::Fork;
    a_raw_clone_child_keeps_the_parents_rw_semaphore_held: RwSemaphore, Birth::RawClone;
}

shm_safe! {
    /// Fields of every size, and no padding.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Mixed {
        /// 8 bytes.
        pub a: u64,
        /// 4 bytes.
        pub b: u32,
        /// 2 bytes.
        pub c: u16,
        /// 1 byte.
        pub d: u8,
        /// 1 byte.
        pub e: u8,
        /// A tail of bytes.
        pub tail: [u8; 8],
    }
}

/// Creates a segment holding `first`; another process writes `second` with `write()`; the
/// segment then holds exactly the bytes of `second` (found whole in a raw mapping), and a
/// read gives them back.
fn round_trips_byte_for_byte<T, L>(name: &str, first: T, second: T)
where
    T: ShmSafe + Copy + PartialEq + std::fmt::Debug,
    L: CortexSync,
{
    let key = unique_key(name);
    let cortex: Cortex<T, L> = Cortex::new(key, first, None).unwrap();
    let child = fork(|| {
        let Ok(c) = Cortex::<T, L>::attach(key) else {
            return 2;
        };
        match c.write(second) {
            Ok(()) => 0,
            Err(_) => 3,
        }
    });
    child.expect_success("write the second value");
    let raw = RawMapping::attach(cortex.segment_id());
    let wanted = common::mapping::bytes_of(&second);
    assert!(
        raw.find(&wanted).is_some(),
        "the segment does not hold the bytes written ({wanted:02x?})"
    );
    assert!(
        raw.find(&common::mapping::bytes_of(&first)).is_none(),
        "the first value is still in the segment"
    );
    drop(raw);
    let back = cortex.read().unwrap();
    assert_eq!(common::mapping::bytes_of(&back), wanted);
    assert_eq!(back, second);
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

fn mixed(seed: u8) -> Mixed {
    let b = |i: u8| seed.wrapping_mul(31).wrapping_add(i);
    Mixed {
        a: u64::from_le_bytes([b(1), b(2), b(3), b(4), b(5), b(6), b(7), b(8)]),
        b: u32::from_le_bytes([b(9), b(10), b(11), b(12)]),
        c: u16::from_le_bytes([b(13), b(14)]),
        d: b(15),
        e: b(16),
        tail: [b(17), b(18), b(19), b(20), b(21), b(22), b(23), b(24)],
    }
}

#[test]
fn a_fixed_vec_of_five_bytes_round_trips_byte_for_byte() {
    let _guard = common::watchdog();
    // 13 bytes: a word and a tail of five single bytes in SeqLock's copies.
    assert_eq!(std::mem::size_of::<FixedVec<u8, 5>>(), 13);
    let old = FixedVec::<u8, 5>::try_from(&[0xaa; 5][..]).unwrap();
    // Every byte non-zero up to the last one, so a lost tail byte shows.
    let full = FixedVec::<u8, 5>::try_from(&[1, 2, 3, 4, 5][..]).unwrap();
    // Unused elements are zero bytes, and must replace the old ones.
    let short = FixedVec::<u8, 5>::try_from(&[6, 7][..]).unwrap();
    round_trips_byte_for_byte::<_, Semaphore>("fixed_vec_5_semaphore", old, full);
    round_trips_byte_for_byte::<_, SeqLock>("fixed_vec_5_seqlock", old, full);
    round_trips_byte_for_byte::<_, SysvSemaphore>("fixed_vec_5_sysv", old, full);
    round_trips_byte_for_byte::<_, Semaphore>("fixed_vec_5_semaphore_short", old, short);
    round_trips_byte_for_byte::<_, SeqLock>("fixed_vec_5_seqlock_short", old, short);
}

#[test]
fn a_shm_safe_struct_round_trips_byte_for_byte() {
    let _guard = common::watchdog();
    assert_eq!(std::mem::size_of::<Mixed>(), 24);
    round_trips_byte_for_byte::<_, Semaphore>("mixed_semaphore", mixed(1), mixed(2));
    round_trips_byte_for_byte::<_, SeqLock>("mixed_seqlock", mixed(3), mixed(4));
    round_trips_byte_for_byte::<_, RwSemaphore>("mixed_rw", mixed(5), mixed(6));
}

#[test]
fn a_world_writable_segment_is_refused_by_attach_and_taken_by_attach_world_writable() {
    let _guard = common::watchdog();
    for mode in [
        SemaphorePermission::ReadWriteForOthers,
        SemaphorePermission::FullAccessForEveryone,
    ] {
        let key = unique_key(&format!("world_writable_{mode:?}"));
        let settings = SemaphoreSettings { mode };
        let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 17, Some(&settings)).unwrap();
        let segment_mode = neocortex_sys::shm::stat(cortex.segment_id()).unwrap().mode;
        assert_ne!(
            segment_mode & 0o002,
            0,
            "{mode:?}: the segment is world-writable"
        );
        let child = fork(|| {
            match Cortex::<u64, Semaphore>::attach(key) {
                Err(e) if e.kind() == ErrorKind::LayoutMismatch => {
                    if !e.to_string().contains("attach_world_writable") {
                        common::write_stderr(&format!("the refusal does not say how: {e}\n"));
                        return 3;
                    }
                }
                _ => return 2,
            }
            match Cortex::<u64, Semaphore>::attach_world_writable(key) {
                Ok(c) if c.read().ok() == Some(17) => 0,
                _ => 4,
            }
        });
        assert_eq!(
            child.wait(),
            Exit::Code(0),
            "{mode:?}: 2: attach took it, 3: the message does not name \
             attach_world_writable, 4: attach_world_writable refused it"
        );
        // The default stays owner-only, and attach takes that.
        let made = Made::of(&cortex);
        drop(cortex);
        made.assert_gone();
    }
    let key = unique_key("world_writable_default");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let segment_mode = neocortex_sys::shm::stat(cortex.segment_id()).unwrap().mode;
    assert_eq!(segment_mode & 0o777, 0o600);
    assert_eq!(
        Cortex::<u64, Semaphore>::attach(key)
            .unwrap()
            .read()
            .unwrap(),
        1
    );
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

/// The offset of the header's `lock_offset` word: two words before `total_size`, the
/// first word of the header equal to the segment's size (the format stores the member
/// table's, the lock state's and the value's offsets, then the total size).
fn lock_offset_field(raw: &RawMapping, size: u64) -> usize {
    let bytes = raw.bytes();
    let total = (0..512)
        .step_by(8)
        .find(|&at| bytes[at..at + 8] == size.to_le_bytes())
        .expect("the header records the segment's size");
    total - 16
}

/// A stale segment (its creator died) whose header says the lock state is one byte past
/// where it belongs: `remove_stale` must not use the state at that offset (a misaligned
/// reference), and whatever it cannot remove it must name in a dirty error.
fn remove_stale_with_an_odd_lock_offset<L: CortexSync>(name: &str) {
    common::in_private_ipc_namespace(|| {
        let key = unique_key(name);
        let report = Pipe::new();
        let creator = fork(|| {
            let Ok(c) = Cortex::<u64, L>::new(key, 5, None) else {
                return 2;
            };
            report.send_i32(c.segment_id());
            // Dies without dropping: the segment and its lock stay.
            std::mem::forget(c);
            0
        });
        creator.expect_success("create and die");
        let id = report.recv_i32();
        let before = common::namespace_objects();
        let size = neocortex_sys::shm::stat(id).unwrap().size;
        let raw = RawMapping::attach(id);
        let field = lock_offset_field(&raw, size);
        let bytes = raw.bytes();
        let lock_offset = u64::from_le_bytes(bytes[field..field + 8].try_into().unwrap());
        raw.write(field, &(lock_offset + 1).to_le_bytes());
        drop(raw);
        let result = Cortex::<u64, L>::remove_stale(key);
        let after = common::namespace_objects();
        match &result {
            Ok(()) => assert!(
                after.0.is_empty() && after.1.is_empty(),
                "remove_stale said Ok but left {after:?} (there were {before:?})"
            ),
            Err(e) if e.is_dirty() => {
                let said = e.to_string();
                for set in &after.1 {
                    assert!(
                        said.contains(&set.to_string()),
                        "{e} does not name set {set}"
                    );
                }
            }
            Err(e) => assert_eq!(
                after, before,
                "a clean refusal ({e}) must leave everything as it was"
            ),
        }
    });
}

#[test]
fn remove_stale_with_an_odd_lock_offset_semaphore() {
    let _guard = common::watchdog();
    remove_stale_with_an_odd_lock_offset::<Semaphore>("remove_stale_odd_semaphore");
}

#[test]
fn remove_stale_with_an_odd_lock_offset_sysv_semaphore() {
    let _guard = common::watchdog();
    remove_stale_with_an_odd_lock_offset::<SysvSemaphore>("remove_stale_odd_sysv");
}

#[test]
fn remove_stale_with_an_odd_lock_offset_rw_semaphore() {
    let _guard = common::watchdog();
    remove_stale_with_an_odd_lock_offset::<RwSemaphore>("remove_stale_odd_rw");
}
