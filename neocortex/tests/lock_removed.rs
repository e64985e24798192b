//! A lock removed from outside (`ipcrm`, systemd `RemoveIPC=yes`) is a clean `LockRemoved`,
//! never a panic or a hang.

mod common;

use std::time::Duration;

use common::{fork, unique_key, Made, Pipe};
use neocortex::{Cortex, ErrorKind, Semaphore};
use neocortex_sys::sem;

#[test]
fn every_access_after_ipcrm_is_lock_removed_and_drops_do_not_panic() {
    let _guard = common::watchdog();
    let key = unique_key("every_access_after_ipcrm");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let other: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
    let made = Made::of(&owner);
    let sem_id = made.sets[0];
    sem::remove(sem_id).unwrap(); // what `ipcrm -s` does
    for err in [
        owner.read().unwrap_err(),
        owner.write(2).unwrap_err(),
        other.lock().map(drop).unwrap_err(),
        other.try_lock().map(drop).unwrap_err(),
        other
            .lock_timeout(Duration::from_millis(10))
            .map(drop)
            .unwrap_err(),
        other.update(|v| *v).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::LockRemoved, "{err}");
        assert!(!err.is_dirty());
        assert!(err.to_string().contains("removed"), "{err}");
    }
    // A new attacher cannot use it either.
    assert_eq!(
        Cortex::<u64, Semaphore>::attach(key).unwrap_err().kind(),
        ErrorKind::LockRemoved
    );
    drop(other);
    drop(owner); // removes the segment; the missing semaphore is only a warning
    made.assert_gone();
}

#[test]
fn a_blocked_waiter_is_woken_with_lock_removed() {
    let _guard = common::watchdog();
    let key = unique_key("a_blocked_waiter_is_woken");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let made = Made::of(&owner);
    let sem_id = made.sets[0];
    let guard = owner.lock().unwrap();
    let waiting = Pipe::new();
    let child = fork(|| {
        let Ok(c) = Cortex::<u64, Semaphore>::attach(key) else {
            return 2;
        };
        waiting.send(1);
        let code = match c.lock() {
            Err(e) if e.kind() == ErrorKind::LockRemoved => 0,
            Err(_) => 3,
            Ok(_) => 4,
        };
        code
    });
    waiting.recv();
    common::wait_until_waiting_for_lock(child.pid());
    sem::remove(sem_id).unwrap();
    child.expect_success("woken by the removal");
    drop(guard); // releasing a removed lock logs a warning, no panic
    drop(owner);
    made.assert_gone();
}
