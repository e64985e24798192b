//! The bare-`libc` floors: a SysV segment, a SysV semaphore taken with `SEM_UNDO`, a futex
//! mutex (Drepper's "mutex 3") and a robust process-shared pthread mutex, each the cheapest
//! form of its mechanism, for the harness to compare the crates against.

use std::io;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A SysV shared memory segment, attached. The creating handle removes it on drop.
#[derive(Debug)]
pub struct SysvSegment {
    id: i32,
    addr: NonNull<u8>,
    len: usize,
    owner: bool,
}

impl SysvSegment {
    /// `shmget(key, len, IPC_CREAT | IPC_EXCL | 0600)` and `shmat`.
    ///
    /// # Errors
    ///
    /// The `shmget` or `shmat` error (the segment is removed again if `shmat` fails).
    pub fn create(key: i32, len: usize) -> io::Result<Self> {
        // SAFETY: shmget takes plain values.
        let id = unsafe { libc::shmget(key, len, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        check(id)?;
        match attach_id(id) {
            Ok(addr) => Ok(Self {
                id,
                addr,
                len,
                owner: true,
            }),
            Err(e) => {
                remove_segment(id);
                Err(e)
            }
        }
    }

    /// `shmget(key, 0, 0)` and `shmat` of an existing segment; dropping only detaches.
    ///
    /// # Errors
    ///
    /// The `shmget` or `shmat` error.
    pub fn attach(key: i32, len: usize) -> io::Result<Self> {
        // SAFETY: shmget with size 0 and no flags only looks the key up.
        let id = unsafe { libc::shmget(key, 0, 0) };
        check(id)?;
        let addr = attach_id(id)?;
        Ok(Self {
            id,
            addr,
            len,
            owner: false,
        })
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// The size asked for at creation.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment has no bytes (never, for a created segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment id, as `ipcs -m` lists it.
    pub fn id(&self) -> i32 {
        self.id
    }
}

/// `shmat(id, NULL, 0)`.
///
/// # Errors
///
/// The `shmat` error.
pub fn attach_id(id: i32) -> io::Result<NonNull<u8>> {
    // SAFETY: shmat with a null address lets the kernel pick a free range.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if addr as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr.cast()).ok_or_else(|| io::Error::other("shmat returned null"))
}

/// `shmdt(addr)`.
///
/// # Errors
///
/// The `shmdt` error.
///
/// # Safety
///
/// `addr` was returned by `shmat` and nothing refers into the mapping any more.
pub unsafe fn detach_addr(addr: NonNull<u8>) -> io::Result<()> {
    // SAFETY: the caller promises `addr` is a live attachment nobody uses any more.
    check(unsafe { libc::shmdt(addr.as_ptr().cast()) })
}

/// `shmctl(id, IPC_RMID)`, best effort.
pub fn remove_segment(id: i32) -> bool {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0 }
}

impl Drop for SysvSegment {
    fn drop(&mut self) {
        // SAFETY: the mapping was attached by this handle and dies with it.
        if let Err(e) = unsafe { detach_addr(self.addr) } {
            eprintln!("compare: shmdt of segment {} failed: {e}", self.id);
        }
        if self.owner && !remove_segment(self.id) {
            eprintln!("compare: IPC_RMID of segment {} failed", self.id);
        }
    }
}

/// A set of one SysV semaphore (value 1 = free), locked and unlocked with `SEM_UNDO`: two
/// system calls per lock+unlock. Removed on drop by its creator.
#[derive(Debug)]
pub struct SemUndo {
    id: i32,
}

impl SemUndo {
    /// `semget(key, 1, IPC_CREAT | IPC_EXCL | 0600)` and `SETVAL 1`.
    ///
    /// # Errors
    ///
    /// The `semget` or `semctl` error (the set is removed again if `semctl` fails).
    pub fn create(key: i32) -> io::Result<Self> {
        let id = create_sem_set(key)?;
        Ok(Self { id })
    }

    fn op(&self, delta: i16) -> io::Result<()> {
        let mut op = libc::sembuf {
            sem_num: 0,
            sem_op: delta,
            sem_flg: libc::SEM_UNDO as i16,
        };
        loop {
            // SAFETY: `op` is one valid sembuf and the count passed is 1.
            let rc = unsafe { libc::semop(self.id, &mut op, 1) };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// `semop(-1, SEM_UNDO)`, retrying `EINTR`.
    ///
    /// # Errors
    ///
    /// The `semop` error (e.g. `EIDRM` when the set was removed).
    pub fn lock(&self) -> io::Result<()> {
        self.op(-1)
    }

    /// `semop(+1, SEM_UNDO)`.
    ///
    /// # Errors
    ///
    /// The `semop` error.
    pub fn unlock(&self) -> io::Result<()> {
        self.op(1)
    }
}

impl Drop for SemUndo {
    fn drop(&mut self) {
        if !remove_sem_set(self.id) {
            eprintln!("compare: IPC_RMID of semaphore set {} failed", self.id);
        }
    }
}

/// `semget(key, 1, IPC_CREAT | IPC_EXCL | 0600)` and `semctl(SETVAL, 1)`: a fresh lock.
///
/// # Errors
///
/// The `semget` or `semctl` error (the set is removed again if `semctl` fails).
pub fn create_sem_set(key: i32) -> io::Result<i32> {
    // SAFETY: semget takes plain values.
    let id = unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    check(id)?;
    // SAFETY: SETVAL takes `union semun`, whose `int val` member is passed as a C int in the
    // variadic slot (the same register on every Linux ABI).
    let rc = unsafe { libc::semctl(id, 0, libc::SETVAL, 1 as libc::c_int) };
    if let Err(e) = check(rc) {
        remove_sem_set(id);
        return Err(e);
    }
    Ok(id)
}

/// `semctl(id, 0, IPC_RMID)`, best effort.
pub fn remove_sem_set(id: i32) -> bool {
    // SAFETY: IPC_RMID ignores the semaphore number and takes no fourth argument.
    unsafe { libc::semctl(id, 0, libc::IPC_RMID) == 0 }
}

fn futex(
    word: &AtomicU32,
    op: libc::c_int,
    val: u32,
    timeout: Option<&libc::timespec>,
) -> libc::c_long {
    let timeout = timeout.map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `word` is a live, aligned 32-bit futex word; the timeout is null (wait
    // forever) or a valid relative timespec, and the remaining arguments are ignored by
    // FUTEX_WAIT and FUTEX_WAKE. Not FUTEX_PRIVATE_FLAG: the word is shared between
    // processes.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, timeout) }
}

/// `FUTEX_WAIT` while `word` holds `val`, for at most `timeout`; returns when woken, when
/// the word differs, on a signal, or when the time is up (the caller looks at the word).
pub fn futex_wait(word: &AtomicU32, val: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    futex(word, libc::FUTEX_WAIT, val, Some(&ts));
}

/// `FUTEX_WAKE` of up to `n` waiters on `word`.
pub fn futex_wake(word: &AtomicU32, n: u32) {
    futex(word, libc::FUTEX_WAKE, n, None);
}

/// Locks Drepper's "mutex 3" (0 free, 1 locked, 2 locked with waiters) in `word`.
pub fn futex_lock(word: &AtomicU32) {
    let mut c = match word.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => return,
        Err(c) => c,
    };
    if c != 2 {
        c = word.swap(2, Ordering::Acquire);
    }
    while c != 0 {
        futex(word, libc::FUTEX_WAIT, 2, None);
        c = word.swap(2, Ordering::Acquire);
    }
}

/// Unlocks a [`futex_lock`]ed word, waking one waiter if there may be one.
pub fn futex_unlock(word: &AtomicU32) {
    if word.fetch_sub(1, Ordering::Release) != 1 {
        word.store(0, Ordering::Release);
        futex_wake(word, 1);
    }
}

/// A robust, process-shared pthread mutex placed at a given address (in a segment).
#[derive(Debug)]
pub struct RobustMutex {
    m: *mut libc::pthread_mutex_t,
}

impl RobustMutex {
    /// Initialises a robust process-shared mutex at `at`.
    ///
    /// # Errors
    ///
    /// The error of a `pthread_mutexattr_*` or `pthread_mutex_init` call.
    ///
    /// # Safety
    ///
    /// `at` is aligned for `pthread_mutex_t`, writable for its size, not in use as a mutex,
    /// and stays mapped while the handle (or one from [`Self::existing`]) is used.
    pub unsafe fn init(at: *mut u8) -> io::Result<Self> {
        let m: *mut libc::pthread_mutex_t = at.cast();
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable storage for an attribute object.
        pthread_check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        let shared = unsafe {
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED)
        };
        // SAFETY: initialised just above.
        let robust = unsafe {
            libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST)
        };
        // SAFETY: the caller promises `m` is aligned, writable and not a live mutex; `attr`
        // is initialised.
        let init = unsafe { libc::pthread_mutex_init(m, attr.as_ptr()) };
        // SAFETY: initialised above; a mutex made from it does not need it any more.
        unsafe { libc::pthread_mutexattr_destroy(attr.as_mut_ptr()) };
        pthread_check(shared)?;
        pthread_check(robust)?;
        pthread_check(init)?;
        Ok(Self { m })
    }

    /// A handle to a mutex initialised by [`Self::init`] (in this or another process).
    ///
    /// # Safety
    ///
    /// `at` holds an initialised robust mutex and stays mapped while the handle is used.
    pub unsafe fn existing(at: *mut u8) -> Self {
        Self { m: at.cast() }
    }

    /// `pthread_mutex_lock`; a dead holder's `EOWNERDEAD` is answered with
    /// `pthread_mutex_consistent`.
    ///
    /// # Errors
    ///
    /// Any other `pthread_mutex_lock` error.
    pub fn lock(&self) -> io::Result<()> {
        // SAFETY: `m` is an initialised mutex in a live mapping (constructors' contracts).
        let rc = unsafe { libc::pthread_mutex_lock(self.m) };
        if rc == libc::EOWNERDEAD {
            // SAFETY: this thread holds the mutex (EOWNERDEAD hands it over).
            pthread_check(unsafe { libc::pthread_mutex_consistent(self.m) })
        } else {
            pthread_check(rc)
        }
    }

    /// `pthread_mutex_unlock`.
    ///
    /// # Errors
    ///
    /// The `pthread_mutex_unlock` error (e.g. `EPERM` when not held).
    pub fn unlock(&self) -> io::Result<()> {
        // SAFETY: `m` is an initialised mutex in a live mapping (constructors' contracts).
        pthread_check(unsafe { libc::pthread_mutex_unlock(self.m) })
    }

    /// `pthread_mutex_destroy`.
    ///
    /// # Safety
    ///
    /// Nobody holds or uses the mutex any more, in any process.
    pub unsafe fn destroy(&self) {
        // SAFETY: the caller promises the mutex is unused; it is initialised.
        unsafe { libc::pthread_mutex_destroy(self.m) };
    }
}

fn pthread_check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
