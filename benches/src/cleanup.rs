//! Unique keys, and the sweep that removes whatever a case left behind.
//!
//! Every key the harness uses comes from [`key_for`], which records how to remove what may
//! be made on it. Objects are normally removed by their owners' `Drop`; [`sweep`] runs after
//! every case and at exit (also after a failed or interrupted case) and removes what is still
//! there, so a run leaves nothing in `ipcs -m -s` or `/dev/shm`.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// What may exist on a key (or under a name) the harness handed out.
#[derive(Debug)]
pub enum Leftover {
    /// A SysV segment and/or a semaphore set made with bare `libc` on this key.
    RawKey(i32),
    /// A neocortex segment: `remove` attaches it with the right value type and lock and
    /// removes the segment and its lock; it returns whether it found one.
    Cortex {
        /// The segment's key.
        key: i32,
        /// Attaches and removes; `true` when something was there.
        remove: fn(i32) -> bool,
    },
    /// The seed crate's segment on the key and its POSIX semaphore
    /// `/dev/shm/sem.cortex_semaphore_<key>`.
    Seed(i32),
    /// A POSIX shared memory object (the `shared_memory` crate), by name (`/dev/shm/<name>`).
    PosixShm(String),
}

fn registry() -> &'static Mutex<Vec<Leftover>> {
    static REGISTRY: OnceLock<Mutex<Vec<Leftover>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

fn base() -> u32 {
    static BASE: OnceLock<u32> = OnceLock::new();
    *BASE.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // SAFETY: `bytes` is a writable buffer of the length passed.
        let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        let random = if got == 4 {
            u32::from_ne_bytes(bytes)
        } else {
            // No random bytes: the pid and the clock still make a per-run base.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            nanos ^ std::process::id().rotate_left(16)
        };
        // Positive keys with a recognisable top nibble (0x4...... or 0x5......).
        (random & 0x1fff_0000) | 0x4000_0000
    })
}

/// Whether nothing that the harness could make is on `key`: no segment, no semaphore set,
/// no seed semaphore in `/dev/shm`.
pub fn key_is_free(key: i32) -> bool {
    if key == libc::IPC_PRIVATE {
        return false;
    }
    // SAFETY: shmget with size 0 and no flags only looks the key up.
    let shm = unsafe { libc::shmget(key, 0, 0) };
    // SAFETY: semget with 0 semaphores and no flags only looks the key up.
    let sem = unsafe { libc::semget(key, 0, 0) };
    let seed = std::path::Path::new(&format!("/dev/shm/sem.{}", seed_sem_name(key))).exists();
    shm == -1 && sem == -1 && !seed
}

/// The name the seed crate gives the POSIX semaphore of the segment on `key`.
pub fn seed_sem_name(key: i32) -> String {
    format!("cortex_semaphore_{key}")
}

/// A fresh key nobody uses, recorded with what may be made on it (`what(key)`).
pub fn key_for(what: impl FnOnce(i32) -> Leftover) -> i32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let key = (base().wrapping_add(n) & 0x7fff_ffff) as i32;
        if key_is_free(key) {
            register(what(key));
            return key;
        }
    }
}

/// A fresh name for a POSIX shared memory object, recorded for the sweep.
pub fn posix_name_for(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("/nc_bench_{:x}_{tag}_{n}", base());
    register(Leftover::PosixShm(name.clone()));
    name
}

/// A name unique to this run and call, for objects that remove themselves (iceoryx2
/// services): `nc_bench_<run>_<tag>_<n>`.
pub fn unique_tag(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("nc_bench_{:x}_{tag}_{n}", base())
}

/// Records something to remove at the next sweep.
pub fn register(what: Leftover) {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(what);
}

fn remove_raw_key(key: i32) -> Vec<String> {
    let mut removed = Vec::new();
    // SAFETY: a lookup only (size 0, no flags).
    let shmid = unsafe { libc::shmget(key, 0, 0) };
    if shmid != -1 {
        // SAFETY: IPC_RMID takes no buffer; the segment is ours (its key came from key_for).
        let rc = unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) };
        removed.push(format!(
            "segment {shmid} on key {key:#x}{}",
            if rc == 0 { "" } else { " (IPC_RMID failed)" }
        ));
    }
    // SAFETY: a lookup only (no semaphores, no flags).
    let semid = unsafe { libc::semget(key, 0, 0) };
    if semid != -1 {
        // SAFETY: IPC_RMID ignores the semaphore number and takes no fourth argument.
        let rc = unsafe { libc::semctl(semid, 0, libc::IPC_RMID) };
        removed.push(format!(
            "semaphore set {semid} on key {key:#x}{}",
            if rc == 0 { "" } else { " (IPC_RMID failed)" }
        ));
    }
    removed
}

fn unlink_posix(
    name: &str,
    unlink: unsafe extern "C" fn(*const libc::c_char) -> libc::c_int,
) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    unsafe { unlink(c.as_ptr()) == 0 }
}

/// Removes everything still present on the keys and names recorded since the last sweep,
/// and forgets them. Returns a description of each object it had to remove (empty when the
/// owners cleaned up after themselves).
pub fn sweep() -> Vec<String> {
    let pending: Vec<Leftover> =
        std::mem::take(&mut *registry().lock().unwrap_or_else(PoisonError::into_inner));
    let mut removed = Vec::new();
    for what in pending {
        match what {
            Leftover::RawKey(key) => removed.extend(remove_raw_key(key)),
            Leftover::Cortex { key, remove } => {
                if remove(key) {
                    removed.push(format!("neocortex segment on key {key:#x} and its lock"));
                }
                // Anything the typed removal could not take (a foreign or half-made segment).
                removed.extend(remove_raw_key(key));
            }
            Leftover::Seed(key) => {
                removed.extend(remove_raw_key(key));
                if unlink_posix(&seed_sem_name(key), libc::sem_unlink) {
                    removed.push(format!("seed semaphore {}", seed_sem_name(key)));
                }
            }
            Leftover::PosixShm(name) => {
                if unlink_posix(&name, libc::shm_unlink) {
                    removed.push(format!("POSIX shared memory {name}"));
                }
            }
        }
    }
    removed
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag instead of killing the process, so the run
/// stops at the next sample, drops its objects and sweeps.
///
/// # Errors
///
/// The `sigaction` error.
pub fn catch_interrupts() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is a valid sigaction whose handler only stores to an atomic
        // (async-signal-safe); no old action is asked for.
        let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether an interrupt signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
