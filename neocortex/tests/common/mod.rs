//! Helpers for cross-process tests: a watchdog per test, forked children, pipe barriers,
//! unique keys, private IPC namespaces, loud skips, log capture and the leak oracle.
//!
//! Test bodies run on a spawned thread, so a fork here is a fork of a multi-threaded
//! process: children only make crate calls and system calls, then leave with `_exit`.
//!
//! Every test starts with `let _guard = common::watchdog();`: a test that hangs (a broken
//! lock, a lost wake-up) aborts its test binary with a message naming it, instead of eating
//! CI's time.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use neocortex::{Cortex, CortexSync, InPlace, Value};
use neocortex_sys::{sem, shm, Errno};

#[cfg(target_os = "linux")]
pub mod debris;
pub mod mapping;
pub mod watching;

/// How long any child may take before the test fails instead of hanging CI.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// How long a test process waits for a lock after a deliberate death (a killed holder or
/// waiter): a broken recovery then fails the test with `Timeout` instead of hanging it.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Overrides the per-test watchdog limit, in seconds.
pub const TEST_TIMEOUT_ENV: &str = "NEOCORTEX_TEST_TIMEOUT_SECS";

/// When `1`, a test that would skip for lack of privileges (root, namespaces) fails
/// instead: CI sets it where it runs as real root, so that a skip cannot hide a test that
/// could have run.
pub const REQUIRE_PRIVILEGED_ENV: &str = "NEOCORTEX_REQUIRE_PRIVILEGED";

/// The per-test watchdog limit: [`TEST_TIMEOUT_ENV`] or 240 s.
pub fn test_limit() -> Duration {
    std::env::var(TEST_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .map_or(Duration::from_secs(240), Duration::from_secs)
}

/// The running test's name, as the harness names its thread.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Writes straight to file descriptor 2, past the test harness's output capture (which
/// would hide a passing test's messages, and loses a forked child's).
pub fn write_stderr(text: &str) {
    let bytes = text.as_bytes();
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writes initialised bytes from a live slice to fd 2.
        let n = unsafe { libc::write(2, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            return;
        }
        done += n as usize;
    }
}

/// Stops the test binary if the test that made it runs past [`test_limit`]; dropped at the
/// end of the test (also when it panics).
#[must_use = "the watchdog stops when the guard is dropped"]
pub struct TestGuard {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
}

/// Starts this test's watchdog with the default limit.
pub fn watchdog() -> TestGuard {
    watchdog_for(test_limit())
}

/// Starts this test's watchdog: after `limit` it prints the test's name and aborts the
/// whole test process (every forked child dies with it: `PR_SET_PDEATHSIG`).
pub fn watchdog_for(limit: Duration) -> TestGuard {
    let name = test_name();
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(format!("watchdog of {name}"))
        .spawn(move || {
            let deadline = Instant::now() + limit;
            let (lock, cvar) = &*flag;
            let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*stopped {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    write_stderr(&format!(
                        "\nwatchdog: test `{name}` is still running after {limit:?} \
                         (limit set by {TEST_TIMEOUT_ENV}); aborting the test process\n"
                    ));
                    std::process::abort();
                }
                stopped = cvar
                    .wait_timeout(stopped, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        })
        .expect("start the watchdog thread");
    TestGuard {
        stop,
        thread: Some(thread),
        pid: std::process::id(),
    }
}

impl Drop for TestGuard {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child's copy: the watchdog thread lives in the parent only.
            if let Some(thread) = self.thread.take() {
                std::mem::forget(thread);
            }
            return;
        }
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Skips the running test, loudly: prints `SKIPPED: <test>: <why>` on stderr (past the
/// harness's capture). Under [`REQUIRE_PRIVILEGED_ENV`]`=1` it fails the test instead.
pub fn skip(why: &str) {
    let name = test_name();
    if std::env::var(REQUIRE_PRIVILEGED_ENV).as_deref() == Ok("1") {
        panic!(
            "{name} would be skipped ({why}), but {REQUIRE_PRIVILEGED_ENV}=1 says this machine \
             can run it"
        );
    }
    write_stderr(&format!("SKIPPED: {name}: {why}\n"));
}

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

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// Runs `body` in a forked child; its return value is the exit code (a panic exits 101,
/// after writing its message to stderr).
pub fn fork(body: impl FnOnce() -> i32) -> Child {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the child runs only `body` (crate and system calls) and leaves with `_exit`,
    // never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        die_with_parent();
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(code) => code,
            Err(payload) => {
                // The harness captured the panic message into the parent's buffer, which
                // this child's copy never reaches: say it on stderr.
                write_stderr(&format!(
                    "forked child {} of `{}` panicked: {}\n",
                    std::process::id(),
                    test_name(),
                    panic_text(&*payload)
                ));
                101
            }
        };
        // SAFETY: leaves the child at once, without running the parent's atexit handlers
        // or destructors of values the child inherited.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

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

    /// The write end's file descriptor, for a signal handler that can only call `write`.
    pub fn write_fd(&self) -> libc::c_int {
        self.write
    }

    /// Sends a 64-bit number.
    pub fn send_u64(&self, n: u64) {
        for byte in n.to_le_bytes() {
            self.send(byte);
        }
    }

    /// Receives a 64-bit number sent with [`send_u64`](Self::send_u64).
    pub fn recv_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.recv();
        }
        u64::from_le_bytes(bytes)
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

// ---------------------------------------------------------------------------------------
// What a child is doing, from /proc: instead of sleeping and hoping it is waiting by now.
// ---------------------------------------------------------------------------------------

/// The fields of `/proc/<pid>/stat` after the command name: `[0]` is the state letter.
fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().map(str::to_owned).collect())
}

/// The scheduler state of `pid` (`R`, `S`, `D`, `T`, `Z`, ...).
pub fn proc_state(pid: libc::pid_t) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: libc::pid_t) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The system call `pid` is blocked in, from `/proc/<pid>/syscall`; `None` when it is not
/// in one or the file cannot be read (no ptrace access, or an old kernel).
pub fn blocked_syscall(pid: libc::pid_t) -> Option<libc::c_long> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Whether `/proc/<pid>/syscall` can be read at all here.
fn syscall_file_readable(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok()
}

/// The system calls a lock waiter sleeps in: futex words and SysV semaphores.
pub const LOCK_WAIT_SYSCALLS: &[libc::c_long] =
    &[libc::SYS_futex, libc::SYS_semop, libc::SYS_semtimedop];

/// Waits until `pid` is asleep in the kernel (state `S`) inside one of `syscalls` (checked
/// when `/proc/<pid>/syscall` is readable), seen twice in a row; fails the test after
/// [`WATCHDOG`].
#[track_caller]
pub fn wait_until_asleep_in(pid: libc::pid_t, syscalls: &[libc::c_long], what: &str) {
    let start = Instant::now();
    let check_syscall = syscall_file_readable(pid);
    let mut seen = 0;
    loop {
        let state = proc_state(pid);
        let asleep = state == Some('S')
            && (!check_syscall || blocked_syscall(pid).is_some_and(|n| syscalls.contains(&n)));
        seen = if asleep { seen + 1 } else { 0 };
        if seen >= 2 {
            return;
        }
        assert!(
            !matches!(state, None | Some('Z')),
            "child {pid} ended while we waited for it to be {what}"
        );
        assert!(
            start.elapsed() < WATCHDOG,
            "child {pid} never was {what} within {WATCHDOG:?} (state {state:?}, syscall {:?})",
            blocked_syscall(pid)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `pid` sleeps waiting for a lock (futex or semaphore).
#[track_caller]
pub fn wait_until_waiting_for_lock(pid: libc::pid_t) {
    wait_until_asleep_in(pid, LOCK_WAIT_SYSCALLS, "asleep waiting for a lock");
}

/// Waits until `pid` has burnt CPU for a while: how a spinning waiter shows that it is in
/// its lock loop (it never sleeps in the kernel).
#[track_caller]
pub fn wait_until_spinning(pid: libc::pid_t) {
    let start = Instant::now();
    let first = cpu_ticks(pid).expect("read the child's CPU time");
    loop {
        let now = cpu_ticks(pid).unwrap_or(first);
        if now >= first + 2 {
            return;
        }
        assert!(
            start.elapsed() < WATCHDOG,
            "child {pid} never spun within {WATCHDOG:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `pid` is stopped (`T`), e.g. after `SIGSTOP`.
#[track_caller]
pub fn wait_until_stopped(pid: libc::pid_t) {
    let start = Instant::now();
    while proc_state(pid) != Some('T') {
        assert!(
            start.elapsed() < WATCHDOG,
            "child {pid} never stopped (state {:?})",
            proc_state(pid)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------
// Privileges and namespaces.
// ---------------------------------------------------------------------------------------

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

/// Whether this process runs as root (uid 0; maybe only inside a user namespace).
pub fn is_root() -> bool {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Whether a forked child can really become uid 65534 (root, and not a user namespace that
/// maps only uid 0); skips the test loudly when not.
pub fn other_user_available() -> bool {
    if !is_root() {
        skip(&format!("dropping to uid {NOBODY} needs root"));
        return false;
    }
    let probe = fork(|| if become_nobody() { 0 } else { 1 });
    if probe.wait() != Exit::Code(0) {
        skip(&format!(
            "this root cannot change to uid {NOBODY} (a user namespace that maps only uid 0?)"
        ));
        return false;
    }
    true
}

/// Exit code of a namespace child that could not get a private IPC namespace.
const NO_NAMESPACE: i32 = 77;

/// Moves this (forked, single-threaded) child into a private IPC namespace: directly with
/// `CAP_SYS_ADMIN`, or else inside a new user namespace that maps this uid and gid to
/// themselves. Returns false when both are refused.
fn unshare_ipc() -> bool {
    // SAFETY: unshare with a plain flag, in a forked child that owns its namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWIPC) } == 0 {
        return true;
    }
    // SAFETY: getuid takes nothing and cannot fail.
    let uid = unsafe { libc::getuid() };
    // SAFETY: getgid takes nothing and cannot fail.
    let gid = unsafe { libc::getgid() };
    // SAFETY: as above; a user namespace needs a single-threaded caller, which a forked
    // child is.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWIPC) } != 0 {
        return false;
    }
    std::fs::write("/proc/self/setgroups", "deny").is_ok()
        && std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")).is_ok()
        && std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")).is_ok()
}

/// Runs `body` in a forked child inside a private IPC namespace, where every SysV object is
/// this test's: a global view (`/proc/sysvipc/*`, lowered limits) is then exact, whatever
/// else runs on the machine. A panic in `body` fails the test. When no namespace can be had
/// the test is skipped loudly (and fails under [`REQUIRE_PRIVILEGED_ENV`]); returns whether
/// the body ran.
#[track_caller]
pub fn in_private_ipc_namespace(body: impl FnOnce()) -> bool {
    let child = fork(|| {
        if !unshare_ipc() {
            return NO_NAMESPACE;
        }
        body();
        0
    });
    match child.wait_timeout(test_limit() * 9 / 10) {
        Exit::Code(NO_NAMESPACE) => {
            skip(
                "no private IPC namespace: unshare(CLONE_NEWIPC) needs CAP_SYS_ADMIN and no \
                 user namespace was allowed either",
            );
            false
        }
        Exit::Code(0) => true,
        other => panic!("the test body failed in its IPC namespace ({other:?}); see stderr"),
    }
}

/// Segment and semaphore-set ids in this IPC namespace.
pub fn namespace_objects() -> (Vec<i32>, Vec<i32>) {
    let ids = |path: &str| -> Vec<i32> {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    };
    (ids("/proc/sysvipc/shm"), ids("/proc/sysvipc/sem"))
}

// ---------------------------------------------------------------------------------------
// Logs.
// ---------------------------------------------------------------------------------------

/// One `tracing` event: its level and its fields, `name=value` separated by spaces (the
/// message is the field `message`).
#[derive(Clone, Debug)]
pub struct LogEvent {
    pub level: tracing::Level,
    pub text: String,
}

#[derive(Default)]
struct Captured(Mutex<Vec<LogEvent>>);

/// A subscriber that keeps every event; installed for one thread with
/// [`capture_logs`].
#[derive(Clone, Default)]
struct Capture(Arc<Captured>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(LogEvent {
                level: *event.metadata().level(),
                text: fields.0,
            });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` with a subscriber for this thread that keeps every `tracing` event; returns
/// `f`'s result and the events.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<LogEvent>) {
    let capture = Capture::default();
    let result = tracing::subscriber::with_default(capture.clone(), f);
    let events = std::mem::take(&mut *capture.0 .0.lock().unwrap_or_else(|e| e.into_inner()));
    (result, events)
}

// ---------------------------------------------------------------------------------------
// The leak oracle.
// ---------------------------------------------------------------------------------------

/// Every semaphore-set id of `cortex` (its members set and its lock's own); each must exist
/// right now (so a lookup that goes stale after a library change fails here, not silently
/// in the leak check).
pub fn semaphore_set_ids<T: ?Sized + Value, L: CortexSync>(cortex: &Cortex<T, L>) -> Vec<i32> {
    let ids = cortex.semaphore_sets();
    for &id in &ids {
        assert!(
            sem::stat(id).is_ok(),
            "the segment reports semaphore set {id}, which does not exist"
        );
    }
    ids
}

/// What a test made: its key, segment ids and semaphore-set ids; checked gone at the end.
#[derive(Clone, Debug, Default)]
pub struct Made {
    pub key: i32,
    pub segments: Vec<i32>,
    pub sets: Vec<i32>,
}

impl Made {
    /// Records the segment and the semaphore sets of `cortex`.
    pub fn of<T: ?Sized + Value, L: CortexSync>(cortex: &Cortex<T, L>) -> Self {
        Self {
            key: cortex.key(),
            segments: vec![cortex.segment_id()],
            sets: semaphore_set_ids(cortex),
        }
    }

    /// Adds the objects of another handle (same key or not: each key is checked).
    pub fn and<T: ?Sized + Value, L: CortexSync>(mut self, cortex: &Cortex<T, L>) -> Self {
        let other = Self::of(cortex);
        self.segments.extend(other.segments);
        self.sets.extend(other.sets);
        self
    }

    /// Asserts every recorded object is gone, and nothing is on the key.
    #[track_caller]
    pub fn assert_gone(&self) {
        assert_gone(self.key, &self.segments, &self.sets);
    }
}

/// The leak oracle: nothing on `key`, the listed segment and semaphore ids are gone, and
/// this process maps no segment of that key.
#[track_caller]
pub fn assert_gone(key: i32, shmids: &[i32], semids: &[i32]) {
    assert_eq!(
        shm::shmget(key, 0, 0).map_err(|e| e.errno),
        Err(Errno::ENOENT),
        "a segment is left on key {key:#x}"
    );
    // The locks make their sets with IPC_PRIVATE, so this finds a set only if a lock
    // wrongly used the key; the ids below are what proves the sets are gone.
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
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let name = format!("/SYSV{:08x}", key as u32);
    assert!(
        !maps.contains(&name),
        "a mapping of key {key:#x} is left in this process"
    );
}

/// Fails the test, instead of hanging it, unless the lock of `cortex` can be taken within
/// [`LOCK_WAIT`]. Call it before an untimed access (`read`, `write`, `update`) that follows
/// a deliberate death, or a release that a broken lock might not have done.
#[track_caller]
pub fn assert_lock_free<T: ?Sized + Value, L: CortexSync<Access = InPlace>>(
    cortex: &Cortex<T, L>,
    when: &str,
) {
    match cortex.lock_timeout(LOCK_WAIT) {
        Ok(guard) => drop(guard),
        Err(e) => panic!("{when}: the lock is not free within {LOCK_WAIT:?}: {e}"),
    }
}

/// Sleeps in a child forever (until killed).
pub fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
