//! Segments are owner-only by default: another user is refused, and a wider mode lets it in.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use common::{assert_gone, become_nobody, fork, unique_key, Made, NOBODY};
use neocortex::{Cortex, ErrorKind, Semaphore, SemaphorePermission, SemaphoreSettings};

/// The exit code for a refusal: 10 for `PermissionDenied` (clean) whose message says what to
/// do next, 13 for one that does not, 11 for another error.
fn refusal(e: &neocortex::CortexError) -> i32 {
    match e.kind() {
        ErrorKind::PermissionDenied if !e.is_dirty() => {
            if e.to_string()
                .contains("ask its creator for a wider Permission")
            {
                10
            } else {
                13
            }
        }
        _ => 11,
    }
}

/// Runs `attach` as uid 65534 and returns the exit code: 0 attached and wrote, 10 + kind
/// index on an error, 2 when privileges could not be dropped.
fn attach_as_nobody(key: i32) -> common::Exit {
    let child = fork(move || {
        if !become_nobody() {
            return 2;
        }
        let refused_as_world_writable = match Cortex::<u64, Semaphore>::attach(key) {
            Err(e)
                if e.kind() == ErrorKind::LayoutMismatch
                    && e.to_string().contains("attach_world_writable") =>
            {
                true
            }
            Err(e) => return refusal(&e),
            Ok(_) => false,
        };
        // Plain attach refuses what everyone may write; the opt-in gets in.
        match Cortex::<u64, Semaphore>::attach_world_writable(key) {
            Ok(c) => match c.write(5) {
                Ok(()) if refused_as_world_writable => 0,
                Ok(()) => 12,
                Err(_) => 3,
            },
            Err(e) => refusal(&e),
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
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn another_user_is_refused_a_default_segment() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    other_user_against("another_user_is_refused", None, common::Exit::Code(10), 1);
}

#[test]
fn a_mode_for_others_lets_another_user_in() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    let mode = Some(SemaphorePermission::ReadWriteForOthers);
    other_user_against("a_mode_for_others", mode, common::Exit::Code(0), 5);
}

#[test]
fn read_only_for_others_keeps_others_from_writing() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    let mode = Some(SemaphorePermission::ReadOnlyForOthers);
    other_user_against("read_only_for_others", mode, common::Exit::Code(10), 1);
}

/// What `ReadOnlyForOthers` (mode 0644) gives another user today. The kernel lets it look
/// the segment up and map it read-only, and the value's bytes are there; it refuses a
/// writable mapping. But `Cortex::attach` asks for read *and* write access (and its lock
/// must change the semaphore, which 0644 refuses too), so another user cannot read the
/// value through neocortex at all: this test documents that refusal. When the library
/// gains a read-only attach, this test must change to use it.
#[test]
fn read_only_for_others_is_readable_by_the_kernel_but_refused_by_attach() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    const VALUE: u64 = 0x5eed_cafe_f00d_beef;
    let key = unique_key("read_only_for_others_readable");
    let settings = SemaphoreSettings {
        mode: SemaphorePermission::ReadOnlyForOthers,
    };
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, VALUE, Some(&settings)).unwrap();
    let child = fork(move || {
        if !become_nobody() {
            return 2;
        }
        // The kernel: a read-only lookup and mapping are allowed, and show the value.
        let Ok(id) = neocortex_sys::shm::shmget(key, 0, 0o400) else {
            return 3;
        };
        let Ok(size) = neocortex_sys::shm::stat(id).map(|ds| ds.size as usize) else {
            return 4;
        };
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        let Ok(addr) = (unsafe { neocortex_sys::shm::attach(id, libc::SHM_RDONLY) }) else {
            return 5;
        };
        // SAFETY: a read-only mapping of the whole segment, `size` bytes, copied out at once.
        let bytes =
            unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), size) }.to_vec();
        // SAFETY: the slice above was copied; nothing refers to the mapping any more.
        if unsafe { neocortex_sys::shm::detach(addr) }.is_err() {
            return 6;
        }
        if !bytes
            .windows(8)
            .any(|w| w == VALUE.to_ne_bytes().as_slice())
        {
            return 7;
        }
        // ... and a writable mapping is refused.
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        match unsafe { neocortex_sys::shm::attach(id, 0) } {
            Err(e) if e.errno == neocortex_sys::Errno::EACCES => {}
            Err(_) => return 8,
            Ok(_) => return 9,
        }
        // neocortex today: attach is refused outright (it wants read and write).
        match Cortex::<u64, Semaphore>::attach(key) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied && !e.is_dirty() => 0,
            Err(_) => 10,
            Ok(_) => 11,
        }
    });
    assert_eq!(
        child.wait(),
        common::Exit::Code(0),
        "0644: readable by the kernel's rules, refused by attach (exit codes: see the test)"
    );
    assert_eq!(cortex.read().unwrap(), VALUE, "nobody changed it");
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn a_squatter_with_a_forged_header_is_refused_and_left_alone() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    use neocortex_sys::shm;
    // A real header, to forge from.
    let model_key = unique_key("a_squatter_model");
    let model: Cortex<u64, Semaphore> = Cortex::new(model_key, 1, None).unwrap();
    let size = usize::try_from(shm::stat(model.segment_id()).unwrap().size).unwrap();
    // SAFETY: an object this test made (or forged) itself, used by nobody else.
    let addr = unsafe { shm::attach(model.segment_id(), libc::SHM_RDONLY) }.unwrap();
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
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        let Ok(addr) = (unsafe { shm::attach(id, 0) }) else {
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
    let model_made = Made::of(&model);
    drop(model);
    // The squatter's segment is writable by everyone: trusting its user is not enough.
    let err = Cortex::<u64, Semaphore>::attach_from_user(key, NOBODY).unwrap_err();
    assert!(err.to_string().contains("attach_world_writable"), "{err}");
    let err = Cortex::<u64, Semaphore>::attach_world_writable(key).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::LockRemoved,
        "the forged members id points to a removed set: {err}"
    );
    // SAFETY: an object this test made (or forged) itself, used by nobody else.
    unsafe { shm::remove(squat_id) }.unwrap();
    assert_gone(key, &[squat_id], &[]);
    model_made.assert_gone();
}

/// The mode asked for reaches every object a lock kind makes: the segment, the members set
/// and the lock's own set; each lock kind names exactly the sets it keeps.
fn every_object_gets<L>(lock_sets: usize)
where
    L: neocortex::CortexSync<Settings = SemaphoreSettings>,
{
    for mode in [
        SemaphorePermission::OwnerOnly,
        SemaphorePermission::OwnerAndGroup,
    ] {
        let want = if mode == SemaphorePermission::OwnerOnly {
            0o600
        } else {
            0o660
        };
        let key = unique_key(&format!("every_object_gets::{}::{want:o}", L::KIND));
        let settings = SemaphoreSettings { mode };
        let cortex: Cortex<u64, L> = Cortex::new(key, 1, Some(&settings)).unwrap();
        let segment = neocortex_sys::shm::stat(cortex.segment_id()).unwrap();
        assert_eq!(segment.mode & 0o777, want, "{}: the segment", L::KIND);
        let sets = cortex.semaphore_sets();
        assert_eq!(sets.len(), 1 + lock_sets, "{}: the sets {sets:?}", L::KIND);
        assert_eq!(
            sets[0],
            cortex.members_set_id(),
            "{}: members first",
            L::KIND
        );
        for id in &sets {
            let set = neocortex_sys::sem::stat(*id).unwrap();
            assert_eq!(set.mode & 0o777, want, "{}: set {id}", L::KIND);
        }
        let made = Made::of(&cortex);
        drop(cortex);
        made.assert_gone();
    }
}

#[test]
fn every_object_gets_the_mode_asked_for() {
    let _guard = common::watchdog();
    every_object_gets::<Semaphore>(0);
    every_object_gets::<neocortex::SeqLock>(0);
    every_object_gets::<neocortex::SysvSemaphore>(1);
    every_object_gets::<neocortex::RwSemaphore>(1);
}
