//! What crashed and careless processes leave behind, made on purpose for the inspection and
//! operator's-tool tests: half-made segments, orphans, foreign segments, and byte-for-byte
//! snapshots to prove that whatever is kept is untouched. Linux only (it reads
//! `/proc/sysvipc`); call these inside `in_private_ipc_namespace`.

use std::collections::{BTreeMap, BTreeSet};

use neocortex::{Cortex, CortexSync, ShmSafe};
use neocortex_core::failpoints::{self, Action};
use neocortex_sys::shm;

use super::{fork, namespace_objects, Exit};

/// A half-made segment on `key`: its creator was killed after setting up the members, the
/// lock and the value, just before publishing it. Returns its id.
#[track_caller]
pub fn stale<L: CortexSync>(key: i32) -> i32 {
    let child = fork(move || {
        failpoints::set("create.before_publish", Some(Action::Kill));
        let _ = Cortex::<u64, L>::new(key, 1, None);
        2
    });
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL), "creator killed");
    shm::shmget(key, 0, 0).expect("the half-made segment is there")
}

/// A ready segment on `key` holding `value`, whose creator exited without removing it.
/// Returns its id.
#[track_caller]
pub fn orphan<T: ShmSafe + Copy + Send, L: CortexSync>(key: i32, value: T) -> i32 {
    let child = fork(move || match Cortex::<T, L>::new(key, value, None) {
        Ok(cortex) => {
            std::mem::forget(cortex);
            0
        }
        Err(e) => {
            super::write_stderr(&format!("orphan: {e}\n"));
            2
        }
    });
    child.expect_success("create and exit without dropping");
    shm::shmget(key, 0, 0).expect("the orphan is there")
}

/// A segment that another program made on `key` with a raw `shmget`, `size` bytes filled
/// with `fill`, its creator gone. Returns its id.
#[track_caller]
pub fn foreign(key: i32, size: usize, fill: u8) -> i32 {
    let child = fork(move || {
        let Ok(id) = shm::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) else {
            return 2;
        };
        if fill != 0 {
            // SAFETY: a fresh segment that only this child knows, detached below.
            let Ok(addr) = (unsafe { shm::attach(id, 0) }) else {
                return 3;
            };
            // SAFETY: the attachment is `size` bytes long and nobody else uses it.
            unsafe { std::ptr::write_bytes(addr.as_ptr().cast::<u8>(), fill, size) };
            // SAFETY: attached above, not used afterwards.
            let _ = unsafe { shm::detach(addr) };
        }
        0
    });
    child.expect_success("a raw shmget");
    shm::shmget(key, 0, 0).expect("the foreign segment is there")
}

/// The bytes of segment `id`, read through a read-only attachment.
pub fn contents(id: i32) -> Vec<u8> {
    let size = usize::try_from(shm::stat(id).expect("stat").size).expect("size");
    // SAFETY: a read-only attachment, detached below.
    let addr = unsafe { shm::attach(id, libc::SHM_RDONLY) }.expect("attach read-only");
    // SAFETY: the attachment is `size` bytes long; nobody writes while the test copies it
    // (the test controls every process that could).
    let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), size) }.to_vec();
    // SAFETY: attached above, and the copy above is the last use.
    unsafe { shm::detach(addr) }.expect("detach");
    bytes
}

/// Every segment of this IPC namespace and its bytes.
pub fn snapshot() -> BTreeMap<i32, Vec<u8>> {
    namespace_objects()
        .0
        .into_iter()
        .map(|id| (id, contents(id)))
        .collect()
}

/// The semaphore sets of this IPC namespace.
pub fn sets() -> BTreeSet<i32> {
    namespace_objects().1.into_iter().collect()
}

/// Removes segment `id` and the semaphore sets `sets` (made by the test, used by nobody).
pub fn remove(id: i32, sets: &[i32]) {
    // SAFETY: objects this test made (or forged) itself, used by nobody else.
    let _ = unsafe { shm::remove(id) };
    for &set in sets {
        // SAFETY: as above.
        let _ = unsafe { neocortex_sys::sem::remove(set) };
    }
}
