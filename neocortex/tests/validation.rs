//! Attaching checks everything before a byte of `T` is read; bad input is a clean error.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{assert_gone, fork, unique_key, Made};
use neocortex::{
    Cortex, CortexError, CortexSync, ErrorKind, Mutex, RwSemaphore, Semaphore, SeqLock,
    SysvSemaphore, ATTACH_INIT_WAIT,
};
use neocortex_sys::shm;

/// A segment made with bare syscalls, removed on drop.
struct RawSegment {
    id: i32,
}

impl RawSegment {
    fn new(key: i32, size: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let id = shm::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        let addr = unsafe { shm::attach(id, 0) }.unwrap();
        // SAFETY: the segment is `size` bytes, freshly made by this test and mapped here;
        // nobody else knows it yet.
        let bytes = unsafe { std::slice::from_raw_parts_mut(addr.as_ptr().cast::<u8>(), size) };
        fill(bytes);
        // SAFETY: `bytes` is not used after this.
        unsafe { shm::detach(addr) }.unwrap();
        Self { id }
    }

    fn bytes(&self, size: usize) -> Vec<u8> {
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        let addr = unsafe { shm::attach(self.id, libc::SHM_RDONLY) }.unwrap();
        // SAFETY: read-only mapping of our own segment of at least `size` bytes.
        let v = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), size) }.to_vec();
        // SAFETY: the slice was copied out above.
        unsafe { shm::detach(addr) }.unwrap();
        v
    }
}

impl Drop for RawSegment {
    fn drop(&mut self) {
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        let _ = unsafe { shm::remove(self.id) };
    }
}

#[test]
fn wrong_type_is_a_layout_mismatch() {
    let _guard = common::watchdog();
    let key = unique_key("wrong_type_is_a_layout_mismatch");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let child = fork(move || match Cortex::<f64, Semaphore>::attach(key) {
        Err(e) if e.kind() == ErrorKind::LayoutMismatch && !e.is_dirty() => 0,
        Err(_) => 2,
        Ok(_) => 3,
    });
    child.expect_success("attach a u64 segment as f64");
    let err = Cortex::<f64, Semaphore>::attach(key).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`u64`") && text.contains("`f64`"), "{text}");
    // Same size, same alignment: still refused.
    assert_eq!(
        Cortex::<i64, Semaphore>::attach(key).unwrap_err().kind(),
        ErrorKind::LayoutMismatch
    );
    assert_eq!(
        Cortex::<[u8; 8], Semaphore>::attach(key)
            .unwrap_err()
            .kind(),
        ErrorKind::LayoutMismatch
    );
    assert_eq!(
        Cortex::<u32, Semaphore>::attach(key).unwrap_err().kind(),
        ErrorKind::LayoutMismatch
    );
    assert_eq!(
        Cortex::<[u64; 2], Semaphore>::attach(key)
            .unwrap_err()
            .kind(),
        ErrorKind::LayoutMismatch
    );
    // The failed attaches left no mapping and did not disturb the owner.
    assert_eq!(shm::stat(owner.segment_id()).unwrap().attached, 1);
    assert_eq!(owner.read().unwrap(), 1);
    let made = Made::of(&owner);
    drop(owner);
    made.assert_gone();
}

/// A segment made with lock `M`, attached with lock `A` (here and from another process):
/// a `LayoutMismatch` that names both lock kinds, whatever else the two have in common.
fn another_lock_kind_is_refused<M: CortexSync, A: CortexSync>(name: &str) {
    let key = unique_key(name);
    let owner: Cortex<u64, M> = Cortex::new(key, 7, None).unwrap();
    let child = fork(move || match Cortex::<u64, A>::attach(key) {
        Err(CortexError::LayoutMismatch { .. }) => 0,
        Err(_) => 2,
        Ok(_) => 3,
    });
    child.expect_success(&format!(
        "attach a `{}` segment with `{}`",
        M::KIND,
        A::KIND
    ));
    let err = Cortex::<u64, A>::attach(key).unwrap_err();
    assert!(
        matches!(err, CortexError::LayoutMismatch { .. }),
        "{} attached as {}: {err:?}",
        M::KIND,
        A::KIND
    );
    let text = err.to_string();
    assert!(
        text.contains(M::KIND) && text.contains(A::KIND),
        "the error names both locks: {text}"
    );
    // Nothing left mapped by the refused attaches, and the owner is undisturbed.
    assert_eq!(shm::stat(owner.segment_id()).unwrap().attached, 1);
    assert_eq!(owner.read().unwrap(), 7);
    let made = Made::of(&owner);
    drop(owner);
    made.assert_gone();
}

#[test]
fn a_semaphore_segment_attached_with_another_lock_is_a_layout_mismatch() {
    let _guard = common::watchdog();
    another_lock_kind_is_refused::<Semaphore, SysvSemaphore>("semaphore_as_sysv_semaphore");
    another_lock_kind_is_refused::<Semaphore, RwSemaphore>("semaphore_as_rw_semaphore");
    // The same state type (a futex word), but readers that do not lock: another kind.
    another_lock_kind_is_refused::<Semaphore, SeqLock>("semaphore_as_seqlock");
}

#[test]
fn a_sysv_semaphore_segment_attached_with_another_lock_is_a_layout_mismatch() {
    let _guard = common::watchdog();
    another_lock_kind_is_refused::<SysvSemaphore, Semaphore>("sysv_semaphore_as_semaphore");
    another_lock_kind_is_refused::<SysvSemaphore, RwSemaphore>("sysv_semaphore_as_rw_semaphore");
}

#[test]
fn an_rw_semaphore_segment_attached_with_another_lock_is_a_layout_mismatch() {
    let _guard = common::watchdog();
    another_lock_kind_is_refused::<RwSemaphore, Semaphore>("rw_semaphore_as_semaphore");
    another_lock_kind_is_refused::<RwSemaphore, SysvSemaphore>("rw_semaphore_as_sysv_semaphore");
}

#[test]
fn a_seqlock_segment_attached_with_another_lock_is_a_layout_mismatch() {
    let _guard = common::watchdog();
    another_lock_kind_is_refused::<SeqLock, Semaphore>("seqlock_as_semaphore");
    another_lock_kind_is_refused::<SeqLock, SysvSemaphore>("seqlock_as_sysv_semaphore");
}

#[test]
fn mutex_and_semaphore_are_one_lock_under_two_names() {
    let _guard = common::watchdog();
    let key = unique_key("mutex_is_semaphore");
    let owner: Cortex<u64, Mutex> = Cortex::new(key, 7, None).unwrap();
    let other: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
    *other.lock().unwrap() += 1;
    assert_eq!(owner.read().unwrap(), 8);
    let made = Made::of(&owner);
    drop((other, owner));
    made.assert_gone();
}

#[test]
fn garbage_on_the_key_is_refused_and_left_untouched() {
    let _guard = common::watchdog();
    let key = unique_key("garbage_on_the_key");
    let size = 4096;
    let raw = RawSegment::new(key, size, |b| {
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = (i * 31 + 7) as u8;
        }
    });
    let before = raw.bytes(size);
    let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LayoutMismatch, "{err}");
    assert!(matches!(err, CortexError::ForeignSegment { .. }), "{err:?}");
    assert!(err.to_string().contains("not a neocortex segment"), "{err}");
    let err = Cortex::<u64, Semaphore>::new(key, 5, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("not a neocortex segment"), "{err}");
    let err = Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(
        shm::shmget(key, 0, 0).unwrap(),
        raw.id,
        "still the same segment"
    );
    assert_eq!(raw.bytes(size), before, "not a byte changed");
    assert_eq!(shm::stat(raw.id).unwrap().attached, 0, "no mapping left");
    drop(raw);
    assert_gone(key, &[], &[]);
}

#[test]
fn a_segment_smaller_than_a_header_is_refused() {
    let _guard = common::watchdog();
    let key = unique_key("a_segment_smaller_than_a_header");
    let raw = RawSegment::new(key, 16, |b| b.fill(0xff));
    let err = Cortex::<u8, Semaphore>::attach(key).unwrap_err();
    assert!(matches!(err, CortexError::ForeignSegment { .. }), "{err:?}");
    assert!(err.to_string().contains("16 bytes"), "{err}");
    assert_eq!(
        Cortex::<u8, Semaphore>::new(key, 1, None)
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    drop(raw);
    assert_gone(key, &[], &[]);

    // The message gives the least size; garbage of exactly that size is looked at (and
    // refused as garbage), one byte less is refused for its size.
    let text = err.to_string();
    let least: usize = text
        .split("smaller than a neocortex header: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the message names the least size: {text}"));
    for (size, smaller) in [(least - 1, true), (least, false)] {
        let key = unique_key(&format!("a_segment_of_{size}_bytes"));
        let raw = RawSegment::new(key, size, |b| b.fill(0xff));
        let err = Cortex::<u8, Semaphore>::attach(key).unwrap_err();
        assert!(matches!(err, CortexError::ForeignSegment { .. }), "{err:?}");
        assert_eq!(
            err.to_string().contains("smaller than a neocortex header"),
            smaller,
            "{size} bytes: {err}"
        );
        // `new` on the key judges the size alike before it looks at the header.
        let err = Cortex::<u8, Semaphore>::new(key, 1, None).unwrap_err();
        assert_eq!(
            err.to_string()
                .contains(&format!("({size} bytes) is not a neocortex segment")),
            smaller,
            "{size} bytes: {err}"
        );
        drop(raw);
        assert_gone(key, &[], &[]);
    }
}

#[test]
fn a_forged_header_that_claims_more_than_the_segment_is_refused() {
    let _guard = common::watchdog();
    let key = unique_key("a_forged_header");
    // A real segment's header copied into a smaller segment: its descriptor claims bytes the
    // segment does not have.
    let real_key = unique_key("a_forged_header_source");
    let real: Cortex<[u64; 512], Semaphore> = Cortex::new_zeroed(real_key, None).unwrap();
    let real_raw = RawSegment {
        id: real.segment_id(),
    };
    let header = real_raw.bytes(1024);
    std::mem::forget(real_raw);
    let forged = RawSegment::new(key, 1024, |b| b.copy_from_slice(&header));
    let err = Cortex::<[u64; 512], Semaphore>::attach(key).unwrap_err();
    assert!(matches!(err, CortexError::ForeignSegment { .. }), "{err:?}");
    drop(forged);
    let made = Made::of(&real);
    drop(real);
    assert_gone(key, &[], &[]);
    made.assert_gone();
}

#[test]
fn a_blank_segment_of_a_live_creator_is_waited_for_then_not_initialized() {
    let _guard = common::watchdog();
    let key = unique_key("a_blank_segment_of_a_live_creator");
    // What a creator's segment looks like between shmget and writing the header.
    let raw = RawSegment::new(key, 4096, |_| ());
    let start = Instant::now();
    let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    let waited = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::NotInitialized, "{err}");
    assert!(waited >= ATTACH_INIT_WAIT, "gave up after {waited:?}");
    assert!(err.to_string().contains("still running"), "{err}");
    // `new` leaves it alone (its creator lives, and it is not even our size).
    let err = Cortex::<u64, Semaphore>::new(key, 1, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("left untouched"), "{err}");
    drop(raw);
    assert_gone(key, &[], &[]);
}

#[test]
fn attach_waits_for_a_creator_that_is_still_initialising() {
    let _guard = common::watchdog();
    let key = unique_key("attach_waits_for_a_creator");
    let in_init = common::Pipe::new();
    let go_on = common::Pipe::new();
    let done = common::Pipe::new();
    let ids = common::Pipe::new();
    let creator = fork(|| {
        let made = Cortex::<u64, Semaphore>::new_with(key, None, |v| {
            // Inside the initialiser: the segment, header and lock exist, nothing is
            // published, and the value is not written yet.
            in_init.send(1);
            go_on.recv();
            *v = 77;
        });
        let Ok(c) = made else { return 2 };
        ids.send_i32(c.segment_id());
        ids.send_i32(common::semaphore_set_ids(&c)[0]);
        // Keep it until the parent has attached and read.
        done.recv();
        drop(c);
        0
    });
    in_init.recv();
    let returned = AtomicBool::new(false);
    let attached = std::thread::scope(|s| {
        let attach = s.spawn(|| {
            let result = Cortex::<u64, Semaphore>::attach(key);
            returned.store(true, Ordering::SeqCst);
            result
        });
        // The creator is parked in its initialiser: attach must still be waiting for it.
        std::thread::sleep(Duration::from_millis(100));
        let early = returned.load(Ordering::SeqCst);
        go_on.send(1);
        let result = attach.join().unwrap();
        assert!(
            !early,
            "attach returned while the creator was still initialising: {result:?}"
        );
        result
    });
    let attached = attached.unwrap();
    assert_eq!(
        attached.read().unwrap(),
        77,
        "attach saw the value only once initialised"
    );
    drop(attached);
    let made = Made {
        key,
        segments: vec![ids.recv_i32()],
        sets: vec![ids.recv_i32()],
    };
    done.send(1);
    creator.expect_success("create slowly");
    made.assert_gone();
}

#[test]
fn zero_sized_and_page_aligned_values_work() {
    let _guard = common::watchdog();
    neocortex::shm_safe! {
        #[derive(Clone, Copy)]
        pub struct Empty {}
    }
    #[repr(C, align(4096))]
    #[derive(Clone, Copy)]
    struct PageAligned([u8; 4096]);
    // SAFETY: a byte array, aligned: every bit pattern valid, no pointers, no Drop.
    unsafe impl neocortex::ShmSafe for PageAligned {
        const TYPE_TAG: u64 = neocortex::marker::tag_of_name("PageAligned");
    }
    let key = unique_key("zero_sized_and_page_aligned");
    let empty: Cortex<Empty, Semaphore> = Cortex::new(key, Empty {}, None).unwrap();
    empty.write(Empty {}).unwrap();
    let made = Made::of(&empty);
    drop(empty);
    made.assert_gone();
    let page: Cortex<PageAligned, Semaphore> = Cortex::new_zeroed(key, None).unwrap();
    {
        let guard = page.lock().unwrap();
        let addr = &*guard as *const PageAligned as usize;
        assert_eq!(addr % 4096, 0);
    }
    let made = Made::of(&page);
    drop(page);
    made.assert_gone();
}
