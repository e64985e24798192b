//! The seed crate's promises, across processes: create, attach, read, write, drop.

mod common;

use std::sync::Arc;

use common::{assert_gone, fork, semaphore_set_ids, unique_key, Made};
use neocortex::{
    Cortex, CortexBuilder, ErrorKind, Semaphore, SemaphorePermission, SemaphoreSettings,
};

fn ids(c: &Cortex<impl neocortex::ShmSafe, Semaphore>) -> (Vec<i32>, Vec<i32>) {
    let made = Made::of(c);
    (made.segments, made.sets)
}

/// The permission bits of the segment and of its semaphore set.
fn modes(c: &Cortex<impl neocortex::ShmSafe, Semaphore>) -> (u16, u16) {
    let shm = neocortex_sys::shm::stat(c.segment_id())
        .expect("stat the segment")
        .mode;
    let sem = neocortex_sys::sem::stat(semaphore_set_ids(c)[0])
        .expect("stat the set")
        .mode;
    (shm & 0o777, sem & 0o777)
}

#[test]
fn seed_readme_example() {
    let _guard = common::watchdog();
    let key = unique_key("seed_readme_example");
    let data: f64 = 42.0;
    let cortex_1: Cortex<_, Semaphore> = Cortex::new(key, data, None).unwrap();
    assert_eq!(cortex_1.read().unwrap(), 42.0);
    let cortex_2: Cortex<f64, Semaphore> = Cortex::attach(key).unwrap();
    assert_eq!(cortex_1.read().unwrap(), cortex_2.read().unwrap());
    let (shm, sem) = ids(&cortex_1);
    drop(cortex_2);
    drop(cortex_1);
    assert_gone(key, &shm, &sem);
}

#[test]
fn seed_readme_permissions_govern_segment_and_lock() {
    let _guard = common::watchdog();
    let key = unique_key("seed_readme_permissions");
    let settings = SemaphoreSettings {
        mode: SemaphorePermission::OwnerAndGroup,
    };
    let cortex: Cortex<_, Semaphore> = Cortex::new(key, 42.0_f64, Some(&settings)).unwrap();
    assert_eq!(modes(&cortex), (0o660, 0o660));
    let (shm, sem) = ids(&cortex);
    drop(cortex);
    assert_gone(key, &shm, &sem);

    // The default is owner-only, never world-writable.
    let cortex: Cortex<_, Semaphore> = Cortex::new(key, 1u8, None).unwrap();
    assert_eq!(modes(&cortex), (0o600, 0o600));
    let (shm, sem) = ids(&cortex);
    drop(cortex);
    assert_gone(key, &shm, &sem);
}

#[test]
fn second_process_attaches_reads_and_writes() {
    let _guard = common::watchdog();
    let key = unique_key("second_process_attaches");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 7, None).unwrap();
    let child = fork(move || {
        let other: Cortex<u64, Semaphore> = match Cortex::attach(key) {
            Ok(c) => c,
            Err(_) => return 2,
        };
        if other.read().ok() != Some(7) {
            return 3;
        }
        if other.write(99).is_err() {
            return 4;
        }
        if other.is_owner() {
            return 5;
        }
        0
    });
    child.expect_success("attach, read 7, write 99");
    assert_eq!(
        cortex.read().unwrap(),
        99,
        "the child's write is visible here"
    );
    // The attacher's exit only detached: the segment is still ours and usable.
    cortex.write(100).unwrap();
    let (shm, sem) = ids(&cortex);
    drop(cortex);
    assert_gone(key, &shm, &sem);
}

#[test]
fn attach_after_owner_dropped_is_not_found() {
    let _guard = common::watchdog();
    let key = unique_key("attach_after_owner_dropped");
    let cortex: Cortex<u32, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let (shm, sem) = ids(&cortex);
    drop(cortex);
    let err = Cortex::<u32, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!err.is_dirty());
    // The failed call is the source, not repeated in the message.
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        source
            .as_deref()
            .is_some_and(|s| s.starts_with("shmget failed")),
        "{source:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("key {key}")) && text.contains("create it first"),
        "{text}"
    );
    assert_gone(key, &shm, &sem);
}

#[test]
fn attach_in_another_process_after_owner_exit_is_not_found() {
    let _guard = common::watchdog();
    let key = unique_key("attach_after_owner_exit");
    let owner = fork(move || match Cortex::<u32, Semaphore>::new(key, 5, None) {
        Ok(c) => {
            drop(c);
            0
        }
        Err(_) => 2,
    });
    owner.expect_success("create and drop");
    let err = Cortex::<u32, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_gone(key, &[], &[]);
}

#[test]
fn twenty_threads_attach_at_once() {
    let _guard = common::watchdog();
    let key = unique_key("twenty_threads_attach");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 0, None).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let c: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
                c.update(|v| *v += 1).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cortex.read().unwrap(), 20);
    assert_eq!(
        neocortex_sys::shm::stat(cortex.segment_id())
            .unwrap()
            .attached,
        1,
        "every attacher detached"
    );
    let (shm, sem) = ids(&cortex);
    drop(cortex);
    assert_gone(key, &shm, &sem);
}

#[test]
fn forked_child_never_releases_or_removes_what_its_parent_owns() {
    let _guard = common::watchdog();
    let key = unique_key("forked_child_never_releases");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 11, None).unwrap();
    let (shm, sem) = ids(&owner);
    // Raw slots let the child drop its *copies* of the handle and the held guard, while the
    // parent's stay untouched.
    let cortex: *mut Option<Cortex<u64, Semaphore>> = Box::into_raw(Box::new(Some(owner)));
    // SAFETY: `cortex` points to a live box that is freed only at the end of this test,
    // after the guard made from it is dropped.
    let guard = unsafe { (*cortex).as_ref() }.unwrap().lock().unwrap();
    let guard: *mut Option<_> = Box::into_raw(Box::new(Some(guard)));
    let child = fork(move || {
        // SAFETY: the child's copy of the box, not yet dropped.
        if unsafe { (*cortex).as_ref() }.is_some_and(Cortex::is_owner) {
            return 5; // a copy of the owner's handle in a child owns nothing
        }
        // SAFETY: the child's copies of both boxes; the guard goes first, as in the parent.
        unsafe {
            drop((*guard).take());
        }
        // SAFETY: as above.
        unsafe {
            drop((*cortex).take());
        }
        // Checked while this child lives: its own exit would undo a wrong release.
        let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
            return 2;
        };
        let code = match c.try_lock() {
            Ok(None) => 0,    // still held by the parent, as it should be
            Ok(Some(_)) => 3, // the child released the parent's lock
            Err(_) => 4,
        };
        code
    });
    child.expect_success("not own, drop an inherited guard and owner handle, then probe");
    // SAFETY: the parent's own box from `Box::into_raw` above, freed once, before the handle
    // it borrows.
    let guard = unsafe { Box::from_raw(guard) };
    // SAFETY: as above; the guard made from it is released first.
    let cortex = unsafe { Box::from_raw(cortex) };
    drop(guard);
    assert_eq!((*cortex).as_ref().unwrap().read().unwrap(), 11);
    drop(cortex);
    assert_gone(key, &shm, &sem);
}

#[test]
fn builder_with_key_random_key_and_settings() {
    let _guard = common::watchdog();
    let key = unique_key("builder_with_key");
    let a = CortexBuilder::new(42.0_f64)
        .key(key)
        .with_default_lock::<Semaphore>()
        .unwrap();
    assert_eq!(a.key(), key);
    assert!(a.is_owner());
    let settings = SemaphoreSettings {
        mode: SemaphorePermission::OwnerAndGroup,
    };
    let b = CortexBuilder::new(7u32)
        .random_key()
        .with_lock::<Semaphore>(&settings)
        .unwrap();
    assert_ne!(b.key(), 0);
    assert_eq!(
        Cortex::<u32, Semaphore>::attach(b.key())
            .unwrap()
            .read()
            .unwrap(),
        7
    );
    let err = CortexBuilder::new(1.0_f64)
        .key(key)
        .with_default_lock::<Semaphore>()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let (k2, shm, sem) = (
        b.key(),
        [a.segment_id(), b.segment_id()],
        [semaphore_set_ids(&a), semaphore_set_ids(&b)].concat(),
    );
    drop((a, b));
    assert_gone(key, &shm, &sem);
    assert_gone(k2, &[], &[]);
}

#[test]
fn force_ownership_adopts_a_kept_segment() {
    let _guard = common::watchdog();
    let key = unique_key("force_ownership_adopts");
    let first: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let (shm, sem) = ids(&first);
    first.detach().unwrap();
    // Kept alive past its creator's handle.
    assert_eq!(
        Cortex::<u64, Semaphore>::attach(key)
            .unwrap()
            .read()
            .unwrap(),
        1
    );
    let adopted = CortexBuilder::new(2u64)
        .key(key)
        .force_ownership()
        .with_default_lock::<Semaphore>()
        .unwrap();
    assert!(adopted.is_owner());
    assert_eq!(adopted.segment_id(), shm[0], "the same segment, adopted");
    assert_eq!(adopted.read().unwrap(), 2);
    drop(adopted);
    assert_gone(key, &shm, &sem);
}

#[test]
fn explicit_remove_and_detach_return_results() {
    let _guard = common::watchdog();
    let key = unique_key("explicit_remove");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 3, None).unwrap();
    let other: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
    let (shm, sem) = ids(&owner);
    owner.remove().unwrap();
    // The attacher keeps its mapping, but the lock is gone.
    let err = other.read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockRemoved, "{err}");
    other.detach().unwrap();
    assert_gone(key, &shm, &sem);
}

#[test]
fn key_zero_is_refused() {
    let _guard = common::watchdog();
    let err = Cortex::<u64, Semaphore>::new(0, 1, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("IPC_PRIVATE"), "{err}");
    let err = Cortex::<u64, Semaphore>::attach(0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn negative_keys_work() {
    let _guard = common::watchdog();
    let key = -unique_key("negative_keys_work");
    let c: Cortex<i64, Semaphore> = Cortex::new(key, -5, None).unwrap();
    assert_eq!(
        Cortex::<i64, Semaphore>::attach(key)
            .unwrap()
            .read()
            .unwrap(),
        -5
    );
    let (shm, sem) = ids(&c);
    drop(c);
    assert_gone(key, &shm, &sem);
}

neocortex::shm_safe! {
    /// 64 MiB: far more than a thread's stack.
    pub struct Big {
        /// 8 Mi words.
        pub words: [u64; 8 * 1024 * 1024],
    }
}

#[test]
fn a_64_mib_value_is_made_and_written_in_place() {
    let _guard = common::watchdog();
    let key = unique_key("a_64_mib_value");
    let cortex: Cortex<Big, Semaphore> = Cortex::new_with(key, None, |big: &mut Big| {
        big.words[0] = 1;
        big.words[big.words.len() - 1] = 2;
    })
    .unwrap();
    let child = fork(move || {
        let c: Cortex<Big, Semaphore> = match Cortex::attach(key) {
            Ok(c) => c,
            Err(_) => return 2,
        };
        let Ok(mut g) = c.lock() else { return 3 };
        if g.words[0] != 1 || g.words[g.words.len() - 1] != 2 {
            return 4;
        }
        g.words.iter_mut().for_each(|w| *w = 9);
        0
    });
    child.expect_success("attach a 64 MiB value and fill it in place");
    {
        let g = cortex.lock().unwrap();
        assert!(g.words.iter().all(|&w| w == 9));
    }
    let (shm, sem) = ids(&cortex);
    drop(cortex);
    assert_gone(key, &shm, &sem);
    let zeroed: Cortex<Big, Semaphore> = Cortex::new_zeroed(key, None).unwrap();
    assert!(zeroed.lock().unwrap().words.iter().all(|&w| w == 0));
    let (shm, sem) = ids(&zeroed);
    drop(zeroed);
    assert_gone(key, &shm, &sem);
}

#[test]
fn a_panicking_initialiser_leaves_nothing() {
    let _guard = common::watchdog();
    let key = unique_key("a_panicking_initialiser");
    let result = std::panic::catch_unwind(|| {
        let _ = Cortex::<u64, Semaphore>::new_with(key, None, |_| panic!("init failed"));
    });
    assert!(result.is_err());
    assert_gone(key, &[], &[]);
}

/// `read_into` copies what another process wrote into the caller's value, under every lock
/// kind.
fn read_into_sees_another_process<L: neocortex::CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Cortex<[u32; 1024], L> = Cortex::new(key, [1; 1024], None).expect("create");
    let child = fork(move || {
        let Ok(other) = Cortex::<[u32; 1024], L>::attach(key) else {
            return 2;
        };
        let mut value = [0u32; 1024];
        value
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as u32);
        match other.write(value) {
            Ok(()) => 0,
            Err(_) => 3,
        }
    });
    child.expect_success("attach and write");
    let mut mine = [0u32; 1024];
    cortex.read_into(&mut mine).expect("read_into");
    assert!(
        mine.iter().enumerate().all(|(i, &v)| v == i as u32),
        "{name}: the child's value, whole"
    );
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

#[test]
fn read_into_sees_another_process_under_every_lock() {
    let _guard = common::watchdog();
    read_into_sees_another_process::<Semaphore>("read_into::semaphore");
    read_into_sees_another_process::<neocortex::SeqLock>("read_into::seqlock");
    read_into_sees_another_process::<neocortex::SysvSemaphore>("read_into::sysv");
    read_into_sees_another_process::<neocortex::RwSemaphore>("read_into::rw");
}
