//! Segments are owner-only by default: another user is refused, and a wider mode lets it in.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use common::{assert_gone, become_nobody, fork, is_root, unique_key, NOBODY};
use neocortex::{Cortex, ErrorKind, Semaphore, SemaphorePermission, SemaphoreSettings};

/// Runs `attach` as uid 65534 and returns the exit code: 0 attached and wrote, 10 + kind
/// index on an error, 2 when privileges could not be dropped.
fn attach_as_nobody(key: i32) -> common::Exit {
    let child = fork(move || {
        if !become_nobody() {
            return 2;
        }
        match Cortex::<u64, Semaphore>::attach(key) {
            Ok(c) => match c.write(5) {
                Ok(()) => 0,
                Err(_) => 3,
            },
            Err(e) if e.kind() == ErrorKind::PermissionDenied && !e.is_dirty() => 10,
            Err(_) => 11,
        }
    });
    child.wait()
}

/// Creates a `u64` segment holding 1 with `mode` (`None`: the default), lets uid 65534 try
/// to attach and write 5, and checks both the child's outcome and the value left.
fn other_user_against(
    name: &str,
    mode: Option<SemaphorePermission>,
    outcome: common::Exit,
    value: u64,
) {
    let key = unique_key(name);
    let settings = mode.map(|mode| SemaphoreSettings { mode });
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, settings.as_ref()).unwrap();
    assert_eq!(attach_as_nobody(key), outcome, "{mode:?}");
    assert_eq!(
        cortex.read().unwrap(),
        value,
        "{mode:?}: the value after the other user"
    );
    let ids = (cortex.segment_id(), cortex.raw_lock().id());
    drop(cortex);
    assert_gone(key, &[ids.0], &[ids.1]);
}

#[test]
fn another_user_is_refused_a_default_segment() {
    if !is_root() {
        eprintln!("skipped: dropping to uid {NOBODY} needs root");
        return;
    }
    other_user_against("another_user_is_refused", None, common::Exit::Code(10), 1);
}

#[test]
fn a_mode_for_others_lets_another_user_in() {
    if !is_root() {
        eprintln!("skipped: dropping to uid {NOBODY} needs root");
        return;
    }
    let mode = Some(SemaphorePermission::ReadWriteForOthers);
    other_user_against("a_mode_for_others", mode, common::Exit::Code(0), 5);
}

#[test]
fn read_only_for_others_keeps_others_from_writing() {
    if !is_root() {
        eprintln!("skipped: dropping to uid {NOBODY} needs root");
        return;
    }
    let mode = Some(SemaphorePermission::ReadOnlyForOthers);
    other_user_against("read_only_for_others", mode, common::Exit::Code(10), 1);
}

#[test]
fn a_squatter_with_a_forged_header_is_refused_and_left_alone() {
    if !is_root() {
        eprintln!("skipped: dropping to uid {NOBODY} needs root");
        return;
    }
    use neocortex_sys::shm;
    // A real header, to forge from.
    let model_key = unique_key("a_squatter_model");
    let model: Cortex<u64, Semaphore> = Cortex::new(model_key, 1, None).unwrap();
    let size = usize::try_from(shm::stat(model.segment_id()).unwrap().size).unwrap();
    let addr = shm::attach(model.segment_id(), libc::SHM_RDONLY).unwrap();
    // SAFETY: a read-only mapping of `size` bytes of our own segment, copied out at once.
    let forged = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), size) }.to_vec();
    // SAFETY: the slice above is not used any more.
    unsafe { shm::detach(addr) }.unwrap();

    // Another user gets to the key first, world-writable, with the forged header.
    let key = unique_key("a_squatter_with_a_forged_header");
    let squatter = fork(|| {
        if !become_nobody() {
            return 2;
        }
        let Ok(id) = shm::shmget(key, forged.len(), libc::IPC_CREAT | libc::IPC_EXCL | 0o666)
        else {
            return 3;
        };
        let Ok(addr) = shm::attach(id, 0) else {
            return 4;
        };
        // SAFETY: our fresh segment of exactly `forged.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(forged.as_ptr(), addr.as_ptr().cast::<u8>(), forged.len())
        };
        0
    });
    squatter.expect_success("squat with a forged header");
    let squat_id = shm::shmget(key, 0, 0).unwrap();
    let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LayoutMismatch, "{err}");
    assert!(err.to_string().contains("created by uid 65534"), "{err}");
    let err = Cortex::<u64, Semaphore>::new(key, 1, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(shm::shmget(key, 0, 0).unwrap(), squat_id, "left in place");
    // Trusting that user on purpose gets past the check to the header and the lock.
    let model_ids = (model.segment_id(), model.raw_lock().id());
    drop(model);
    let err = Cortex::<u64, Semaphore>::attach_from_user(key, NOBODY).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::LockRemoved,
        "the forged lock id points to a removed set: {err}"
    );
    shm::remove(squat_id).unwrap();
    assert_gone(key, &[squat_id], &[]);
    assert_gone(model_key, &[model_ids.0], &[model_ids.1]);
}
