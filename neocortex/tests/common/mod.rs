//! Helpers for cross-process tests: forked children with a watchdog, pipe barriers, unique
//! keys and the leak oracle.
//!
//! Test bodies run on a spawned thread, so a fork here is a fork of a multi-threaded
//! process: children only make crate calls and system calls, then leave with `_exit`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::Write;
use std::time::{Duration, Instant};

use neocortex_sys::{sem, shm, Errno};

/// How long any child may take before the test fails instead of hanging CI.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// A key no other test uses: the test's name hashed with this process's pid.
pub fn unique_key(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().chain(std::process::id().to_ne_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // Never 0 (IPC_PRIVATE), never negative, to keep keys easy to read in `ipcs`.
    ((h & 0x3fff_ffff) | 0x4000_0000) as i32
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// A forked child process; killed and reaped on drop if the test did not wait for it.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Runs `body` in a forked child; its return value is the exit code (a panic exits 101).
pub fn fork(body: impl FnOnce() -> i32) -> Child {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the child runs only `body` (crate and system calls) and leaves with `_exit`,
    // never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        die_with_parent();
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: leaves the child at once, without running the parent's atexit handlers
        // or destructors of values the child inherited.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

/// A hung test must not leave us: the kernel kills this child when the parent dies.
#[cfg(target_os = "linux")]
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Without `PR_SET_PDEATHSIG` (Linux only), children are killed by the parent's `Child`
/// drop and watchdog; a harness killed outright can leave one behind.
#[cfg(not(target_os = "linux"))]
fn die_with_parent() {}

impl Child {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: sends a signal to our own child, which is not yet reaped (pid not reused).
        let ret = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(ret, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// Waits for the child; a child still running after `timeout` is killed and the test
    /// fails with a message.
    pub fn wait_timeout(mut self, timeout: Duration) -> Exit {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if ret == self.pid {
                self.reaped = true;
                return if libc::WIFEXITED(status) {
                    Exit::Code(libc::WEXITSTATUS(status))
                } else {
                    Exit::Signal(libc::WTERMSIG(status))
                };
            }
            assert!(
                ret == 0,
                "waitpid({}) failed: {}",
                self.pid,
                std::io::Error::last_os_error()
            );
            if start.elapsed() > timeout {
                self.kill_and_reap();
                panic!(
                    "watchdog: child {} still running after {timeout:?}; killed",
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits with the default watchdog.
    pub fn wait(self) -> Exit {
        self.wait_timeout(WATCHDOG)
    }

    /// Waits and asserts a zero exit code.
    pub fn expect_success(self, what: &str) {
        let pid = self.pid;
        assert_eq!(self.wait(), Exit::Code(0), "child {pid} ({what}) failed");
    }

    fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaps our own child; blocks only until the SIGKILL lands.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// A one-way pipe used as a barrier or a signal between processes.
#[derive(Debug)]
pub struct Pipe {
    read: libc::c_int,
    write: libc::c_int,
}

impl Pipe {
    pub fn new() -> Self {
        let mut fds = [0; 2];
        #[cfg(not(target_os = "macos"))]
        {
            // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
            let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(ret, 0, "pipe2 failed");
        }
        #[cfg(target_os = "macos")]
        {
            // macOS has no pipe2: pipe, then close-on-exec on both ends.
            // SAFETY: `fds` is a valid array of two ints for pipe to fill.
            let ret = unsafe { libc::pipe(fds.as_mut_ptr()) };
            assert_eq!(ret, 0, "pipe failed");
            for fd in fds {
                // SAFETY: F_SETFD on a descriptor this process just opened.
                let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                assert_eq!(ret, 0, "fcntl(F_SETFD) failed");
            }
        }
        Self {
            read: fds[0],
            write: fds[1],
        }
    }

    /// Sends one byte.
    pub fn send(&self, byte: u8) {
        // SAFETY: writes one byte from a live local to our own pipe.
        let n = unsafe { libc::write(self.write, (&byte as *const u8).cast(), 1) };
        assert_eq!(n, 1, "pipe write failed");
    }

    /// Sends `n` bytes at once, releasing `n` waiters together.
    pub fn release(&self, n: usize) {
        let bytes = vec![1u8; n];
        // SAFETY: writes `n` bytes from a live buffer to our own pipe.
        let written = unsafe { libc::write(self.write, bytes.as_ptr().cast(), n) };
        assert_eq!(written, n as isize, "pipe write failed");
    }

    /// Receives one byte, or `None` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<u8> {
        let mut pfd = libc::pollfd {
            fd: self.read,
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // SAFETY: polls one valid pollfd.
            let ret =
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if ret == 1 {
                let mut byte = 0u8;
                // SAFETY: reads one byte into a live local.
                let n = unsafe { libc::read(self.read, (&mut byte as *mut u8).cast(), 1) };
                if n == 1 {
                    return Some(byte);
                }
                return None;
            }
            if ret == 0 || Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Sends a 32-bit number.
    pub fn send_i32(&self, n: i32) {
        for byte in n.to_le_bytes() {
            self.send(byte);
        }
    }

    /// Receives a 32-bit number sent with [`send_i32`](Self::send_i32).
    pub fn recv_i32(&self) -> i32 {
        i32::from_le_bytes([self.recv(), self.recv(), self.recv(), self.recv()])
    }

    /// Receives one byte, failing the test after the watchdog time.
    pub fn recv(&self) -> u8 {
        self.recv_timeout(WATCHDOG)
            .expect("watchdog: no message on the pipe")
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: closes fds this struct owns.
        unsafe {
            libc::close(self.read);
        }
        // SAFETY: as above.
        unsafe {
            libc::close(self.write);
        }
    }
}

/// The uid and gid of `nobody`.
pub const NOBODY: libc::uid_t = 65534;

/// Drops this (forked child) process to uid/gid 65534 with no supplementary groups.
pub fn become_nobody() -> bool {
    // SAFETY: clears the supplementary groups of this child process; no pointers are read
    // when the count is 0.
    let groups = unsafe { libc::setgroups(0, std::ptr::null()) };
    // SAFETY: plain credential call in a forked child that owns its credentials.
    let gid = unsafe { libc::setgid(NOBODY) };
    // SAFETY: as above; the uid goes last, while we still may change the gid.
    let uid = unsafe { libc::setuid(NOBODY) };
    groups == 0 && gid == 0 && uid == 0
}

/// Whether this process runs as root (needed to drop to another user).
pub fn is_root() -> bool {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Sleeps in a child forever (until killed).
pub fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The leak oracle: nothing on `key`, the listed segment and semaphore ids are gone, and
/// this process maps no segment of that key.
pub fn assert_gone(key: i32, shmids: &[i32], semids: &[i32]) {
    assert_eq!(
        shm::shmget(key, 0, 0).map_err(|e| e.errno),
        Err(Errno::ENOENT),
        "a segment is left on key {key:#x}"
    );
    assert_eq!(
        sem::semget(key, 0, 0).map_err(|e| e.errno),
        Err(Errno::ENOENT),
        "a semaphore set is left on key {key:#x}"
    );
    for &id in shmids {
        // Removed means gone, or marked for destruction (SHM_DEST) while a forked child of
        // a concurrent test still maps it: it goes when that child exits.
        const SHM_DEST: u16 = 0o1000;
        if let Ok(ds) = shm::stat(id) {
            assert!(
                ds.mode & SHM_DEST != 0,
                "segment id {id} is left (key {key:#x})"
            );
        }
    }
    for &id in semids {
        let left = sem::stat(id);
        assert!(
            left.is_err(),
            "semaphore set id {id} is left (key {key:#x})"
        );
    }
    // Linux only: elsewhere there is no /proc to read, and this part of the check is empty.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let name = format!("/SYSV{:08x}", key as u32);
    assert!(
        !maps.contains(&name),
        "a mapping of key {key:#x} is left in this process"
    );
}
