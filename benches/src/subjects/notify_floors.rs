//! The floors of `notify_roundtrip`: the same two-process ping-pong through a bare futex
//! word in a SysV segment, through two `eventfd`s, and through two pipes.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{show, Case, Setup};
use crate::affinity::CorePair;
use crate::cleanup::{key_for, Leftover};
use crate::floors::{futex_wait, futex_wake, SysvSegment};
use crate::pingpong::{ping_pong, Channel, End, PINGER};

/// A counter word at the start of a SysV segment: a side adds one and wakes; the other
/// sleeps in `FUTEX_WAIT` while the word is what it saw last. Forked ends use the mapping
/// they inherit.
struct FutexChannel {
    seg: Rc<SysvSegment>,
}

struct FutexEnd {
    seg: Rc<SysvSegment>,
    seen: u32,
}

impl FutexEnd {
    fn word(&self) -> &AtomicU32 {
        let word = NonNull::new(self.seg.as_ptr().cast::<AtomicU32>()).expect("segment");
        // SAFETY: the word is at the page-aligned start of a live segment (`seg` keeps it),
        // zero-filled by the kernel and only accessed atomically.
        unsafe { word.as_ref() }
    }
}

impl End for FutexEnd {
    fn send(&mut self) -> Result<(), String> {
        self.seen = self.word().fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        futex_wake(self.word(), u32::MAX);
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<bool, String> {
        let now = self.word().load(Ordering::Acquire);
        if now == self.seen {
            futex_wait(self.word(), now, timeout);
        }
        let now = self.word().load(Ordering::Acquire);
        if now == self.seen {
            return Ok(false);
        }
        self.seen = now;
        Ok(true)
    }
}

impl Channel for FutexChannel {
    fn end(&self, _role: usize) -> Result<Box<dyn End>, String> {
        Ok(Box::new(FutexEnd {
            seg: self.seg.clone(),
            seen: 0,
        }))
    }
}

/// The futex ping-pong.
///
/// # Errors
///
/// Creating the segment or forking failed.
pub fn futex_setup(cores: CorePair) -> Result<Setup, String> {
    let seg = SysvSegment::create(key_for(Leftover::RawKey), 64).map_err(show)?;
    let batch = ping_pong(FutexChannel { seg: Rc::new(seg) }, cores.second)?;
    Ok(Setup::Timed(batch))
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn write_all(fd: &OwnedFd, bytes: &[u8]) -> Result<(), String> {
    // SAFETY: `bytes` is a readable buffer of the length passed; `fd` is open.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if n == bytes.len() as isize {
        Ok(())
    } else {
        Err(last_error("write"))
    }
}

/// Reads `buf.len()` bytes; `Ok(false)` at end of file (the writing side is gone).
fn read_exact(fd: &OwnedFd, buf: &mut [u8]) -> Result<bool, String> {
    loop {
        // SAFETY: `buf` is a writable buffer of the length passed; `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == buf.len() as isize {
            return Ok(true);
        }
        if n == 0 {
            return Ok(false);
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(last_error("read"));
        }
    }
}

/// Two eventfds: the harness writes to the first and reads the second, the child the other
/// way round. A wait is `poll` (for its timeout: an eventfd has no end of file to show that
/// the other side died) and then `read`.
struct EventfdChannel {
    fds: Rc<[OwnedFd; 2]>,
}

struct EventfdEnd {
    fds: Rc<[OwnedFd; 2]>,
    send: usize,
}

impl End for EventfdEnd {
    fn send(&mut self) -> Result<(), String> {
        write_all(&self.fds[self.send], &1u64.to_ne_bytes())
    }

    fn recv(&mut self, timeout: Duration) -> Result<bool, String> {
        let fd = &self.fds[1 - self.send];
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if rc <= 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 8];
        read_exact(fd, &mut buf)
    }
}

impl Channel for EventfdChannel {
    fn end(&self, role: usize) -> Result<Box<dyn End>, String> {
        Ok(Box::new(EventfdEnd {
            fds: self.fds.clone(),
            send: if role == PINGER { 0 } else { 1 },
        }))
    }
}

fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: eventfd takes plain values.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd == -1 {
        return Err(last_error("eventfd"));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The eventfd ping-pong (`notify_roundtrip` only).
///
/// # Errors
///
/// Creating the eventfds or forking failed.
pub fn eventfd_setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    if case != Case::NotifyRoundtrip {
        return Ok(Setup::Unsupported(
            "a notification floor: notify_roundtrip only",
        ));
    }
    let fds = Rc::new([eventfd()?, eventfd()?]);
    let batch = ping_pong(EventfdChannel { fds }, cores.second)?;
    Ok(Setup::Timed(batch))
}

/// Two pipes: `ping` from the harness to the child, `pong` back. Each end keeps the two
/// descriptors it uses and closes the other two, so a side that dies shows as end of file
/// and a wait can simply block in `read`.
struct PipeChannel {
    /// `[ping read, ping write, pong read, pong write]`, taken by the ends.
    fds: RefCell<[Option<OwnedFd>; 4]>,
}

struct PipeEnd {
    send: OwnedFd,
    recv: OwnedFd,
}

impl End for PipeEnd {
    fn send(&mut self) -> Result<(), String> {
        write_all(&self.send, &[1])
    }

    fn recv(&mut self, _timeout: Duration) -> Result<bool, String> {
        let mut buf = [0u8; 1];
        if read_exact(&self.recv, &mut buf)? {
            Ok(true)
        } else {
            Err("the other side closed its pipe".into())
        }
    }
}

impl Channel for PipeChannel {
    fn end(&self, role: usize) -> Result<Box<dyn End>, String> {
        let mut fds = self.fds.borrow_mut();
        let [ping_r, ping_w, pong_r, pong_w] = std::mem::take(&mut *fds);
        let (send, recv) = if role == PINGER {
            (ping_w, pong_r)
        } else {
            (pong_w, ping_r)
        };
        // The other two close here, as they go out of scope.
        Ok(Box::new(PipeEnd {
            send: send.ok_or("pipe end already taken")?,
            recv: recv.ok_or("pipe end already taken")?,
        }))
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(last_error("pipe2"));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, the other one.
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read, write))
}

/// The pipe ping-pong (`notify_roundtrip` only).
///
/// # Errors
///
/// Creating the pipes or forking failed.
pub fn pipe_setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    if case != Case::NotifyRoundtrip {
        return Ok(Setup::Unsupported(
            "a notification floor: notify_roundtrip only",
        ));
    }
    let (ping_r, ping_w) = pipe()?;
    let (pong_r, pong_w) = pipe()?;
    let channel = PipeChannel {
        fds: RefCell::new([Some(ping_r), Some(ping_w), Some(pong_r), Some(pong_w)]),
    };
    let batch = ping_pong(channel, cores.second)?;
    Ok(Setup::Timed(batch))
}
