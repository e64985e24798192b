//! Attaching checks everything before a byte of `T` is read; bad input is a clean error.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_gone, fork, unique_key};
use neocortex::{Cortex, CortexError, ErrorKind, Semaphore, ATTACH_INIT_WAIT};
use neocortex_sys::shm;

/// A segment made with bare syscalls, removed on drop.
struct RawSegment {
    id: i32,
}

impl RawSegment {
    fn new(key: i32, size: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let id = shm::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
        let addr = shm::attach(id, 0).unwrap();
        // SAFETY: the segment is `size` bytes, freshly made by this test and mapped here;
        // nobody else knows it yet.
        let bytes = unsafe { std::slice::from_raw_parts_mut(addr.as_ptr().cast::<u8>(), size) };
        fill(bytes);
        // SAFETY: `bytes` is not used after this.
        unsafe { shm::detach(addr) }.unwrap();
        Self { id }
    }

    fn bytes(&self, size: usize) -> Vec<u8> {
        let addr = shm::attach(self.id, libc::SHM_RDONLY).unwrap();
        // SAFETY: read-only mapping of our own segment of at least `size` bytes.
        let v = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), size) }.to_vec();
        // SAFETY: the slice was copied out above.
        unsafe { shm::detach(addr) }.unwrap();
        v
    }
}

impl Drop for RawSegment {
    fn drop(&mut self) {
        let _ = shm::remove(self.id);
    }
}

#[test]
fn wrong_type_is_a_layout_mismatch() {
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
    let (shm_id, sem_id) = (owner.segment_id(), owner.raw_lock().id());
    drop(owner);
    assert_gone(key, &[shm_id], &[sem_id]);
}

#[test]
fn garbage_on_the_key_is_refused_and_left_untouched() {
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
}

#[test]
fn a_forged_header_that_claims_more_than_the_segment_is_refused() {
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
    let ids = (real.segment_id(), real.raw_lock().id());
    drop(real);
    assert_gone(key, &[], &[]);
    assert_gone(real_key, &[ids.0], &[ids.1]);
}

#[test]
fn a_blank_segment_of_a_live_creator_is_waited_for_then_not_initialized() {
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
    let key = unique_key("attach_waits_for_a_creator");
    let ready = common::Pipe::new();
    let done = common::Pipe::new();
    let creator = fork(|| {
        let made = Cortex::<u64, Semaphore>::new_with(key, None, |v| {
            *v = 77;
            ready.send(1);
            std::thread::sleep(Duration::from_millis(150));
        });
        let Ok(c) = made else { return 2 };
        // Keep it until the parent has attached and read.
        done.recv();
        drop(c);
        0
    });
    ready.recv();
    let attached: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
    assert_eq!(attached.read().unwrap(), 77);
    drop(attached);
    done.send(1);
    creator.expect_success("create slowly");
    assert_gone(key, &[], &[]);
}

#[test]
fn zero_sized_and_page_aligned_values_work() {
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
    let ids = (empty.segment_id(), empty.raw_lock().id());
    drop(empty);
    assert_gone(key, &[ids.0], &[ids.1]);
    let page: Cortex<PageAligned, Semaphore> = Cortex::new_zeroed(key, None).unwrap();
    {
        let guard = page.lock().unwrap();
        let addr = &*guard as *const PageAligned as usize;
        assert_eq!(addr % 4096, 0);
    }
    let ids = (page.segment_id(), page.raw_lock().id());
    drop(page);
    assert_gone(key, &[ids.0], &[ids.1]);
}
