//! An unhandled dirty error in `Drop` is logged exactly once with `tracing::error!`.

mod common;

use common::{assert_gone, capture_logs, fork, Pipe};
use neocortex::{Cortex, Semaphore};
use neocortex_sys::{sem, shm};

#[test]
fn a_dirty_drop_is_logged_once_naming_what_is_left() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    let key = common::unique_key("a_dirty_drop_is_logged_once");
    let ids = Pipe::new();
    let child = fork(|| {
        let Ok(cortex) = Cortex::<u64, Semaphore>::new(key, 1, None) else {
            return 2;
        };
        ids.send_i32(common::semaphore_set_ids(&cortex)[0]);
        // Lose the right to remove what this process created.
        if !common::become_nobody() {
            return 3;
        }
        let ((), events) = capture_logs(|| drop(cortex));
        let errors: Vec<_> = events
            .iter()
            .filter(|e| e.level == tracing::Level::ERROR)
            .map(|e| e.text.as_str())
            .collect();
        if errors.len() != 1 {
            common::write_stderr(&format!(
                "expected one error event, got {}: {events:?}\n",
                errors.len()
            ));
            return 4;
        }
        if !(errors[0].contains("ipcrm -m") && errors[0].contains("ipcrm -s")) {
            common::write_stderr(&format!(
                "the error does not name both objects: {}\n",
                errors[0]
            ));
            return 5;
        }
        0
    });
    let semid = ids.recv_i32();
    child.expect_success("drop a Cortex it may no longer remove");
    // Clean up what the child could not, as root, and check it is all gone.
    let shmid = shm::shmget(key, 0, 0).expect("the segment is left, as the log said");
    // SAFETY: an object this test made (or forged) itself, used by nobody else.
    unsafe { shm::remove(shmid) }.unwrap();
    // SAFETY: an object this test made (or forged) itself, used by nobody else.
    unsafe { sem::remove(semid) }.expect("the semaphore set is left, as the log said");
    assert_gone(key, &[shmid], &[semid]);
}

/// The healthy lifetime logs nothing at error or warning level: creation (whose rollback
/// guard is dropped unused), attach, access, detach and the owner's removal.
#[test]
fn a_healthy_lifetime_logs_no_error_or_warning() {
    let _guard = common::watchdog();
    let key = common::unique_key("a_healthy_lifetime_logs_nothing");
    let ((), events) = capture_logs(|| {
        let cortex = Cortex::<u64, Semaphore>::new(key, 1, None).unwrap();
        let other = Cortex::<u64, Semaphore>::attach(key).unwrap();
        other.write(2).unwrap();
        assert_eq!(cortex.read().unwrap(), 2);
        let made = common::Made::of(&cortex);
        drop(other);
        cortex.remove().unwrap();
        made.assert_gone();
    });
    let loud: Vec<_> = events
        .iter()
        .filter(|e| e.level <= tracing::Level::WARN)
        .collect();
    assert!(loud.is_empty(), "{loud:?}");
}
