//! Two-process ping-pong: the harness notifies a forked child, which wakes and notifies
//! back; the timed operation is one round trip, measured in the harness process.
//!
//! The child is forked when the subject is set up and answers until the timed batch is
//! dropped. Waits are bounded (a short timeout, then a look at whether the other side is
//! still there), so neither side can hang on the other's death.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::child::{
    await_child, fork_child, has_exited, kill, reap, Shared, ZeroedAtomics, PATIENCE,
};
use crate::measure::Batch;

/// How long one wait sleeps before it looks whether the other side is gone.
pub const WAIT_STEP: Duration = Duration::from_millis(100);

/// The harness's role: it pings and times.
pub const PINGER: usize = 0;
/// The child's role: it answers.
pub const PONGER: usize = 1;

/// One side's end of a two-way notification.
pub trait End {
    /// Notifies the other side.
    ///
    /// # Errors
    ///
    /// What failed, as text.
    fn send(&mut self) -> Result<(), String>;

    /// Waits up to `timeout` for the other side's notification; `Ok(false)` when none came.
    ///
    /// # Errors
    ///
    /// What failed, as text.
    fn recv(&mut self, timeout: Duration) -> Result<bool, String>;
}

/// A subject of `notify_roundtrip`: what both processes share (made before the fork), and
/// how each side opens its end.
pub trait Channel {
    /// Opens the end for `role` ([`PINGER`] or [`PONGER`]) in the process that uses it: the
    /// child calls it right after `fork` (attaching by key or name, as a real second process
    /// would).
    ///
    /// # Errors
    ///
    /// What failed, as text.
    fn end(&self, role: usize) -> Result<Box<dyn End>, String>;
}

#[derive(Debug, Default)]
#[repr(C)]
struct Control {
    /// Set by the child once its end is open: a notification sent earlier may be lost
    /// (iceoryx2 delivers events only to listeners that exist).
    ready: AtomicU32,
    stop: AtomicU32,
}

// SAFETY: all-zero is the default Control, and every field is an atomic.
unsafe impl ZeroedAtomics for Control {}

/// The child's loop: answer every ping until told to stop.
fn answer(channel: &dyn Channel, ctl: &Control) -> i32 {
    let mut end = match channel.end(PONGER) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("compare: ping-pong child could not open its end: {e}");
            return 1;
        }
    };
    ctl.ready.store(1, Ordering::Release);
    loop {
        match end.recv(WAIT_STEP) {
            Ok(true) => {}
            Ok(false) => {
                if ctl.stop.load(Ordering::Acquire) != 0 {
                    return 0;
                }
                continue;
            }
            Err(e) => {
                eprintln!("compare: ping-pong child: {e}");
                return 1;
            }
        }
        if ctl.stop.load(Ordering::Acquire) != 0 {
            return 0;
        }
        if let Err(e) = end.send() {
            eprintln!("compare: ping-pong child: {e}");
            return 1;
        }
    }
}

/// A running ping-pong: the channel, the answering child, and the harness's end.
struct Echo<C: Channel + 'static> {
    // Declared first: closed before the channel (which owns what is shared) goes.
    end: Option<Box<dyn End>>,
    child: libc::pid_t,
    control: Shared<Control>,
    _channel: C,
}

impl<C: Channel + 'static> Echo<C> {
    fn round_trip(&mut self) -> Result<(), String> {
        let end = self.end.as_mut().ok_or("no end")?;
        end.send()?;
        let started = Instant::now();
        while !end.recv(WAIT_STEP)? {
            if has_exited(self.child) {
                return Err("the answering child died".into());
            }
            if crate::cleanup::interrupted() {
                return Err("interrupted".into());
            }
            if started.elapsed() > PATIENCE {
                return Err("no answer in time".into());
            }
        }
        Ok(())
    }
}

impl<C: Channel + 'static> Drop for Echo<C> {
    fn drop(&mut self) {
        self.control.get().stop.store(1, Ordering::Release);
        // One more ping wakes the child at once; it sees the stop and exits.
        if let Some(end) = self.end.as_mut() {
            let _ = end.send();
        }
        let status = reap(&[self.child]);
        if status[0] != Some(0) {
            eprintln!("compare: ping-pong child ended with {:?}", status[0]);
        }
        self.end = None;
    }
}

/// Forks the child that answers on `channel` (pinned to `child_core`) and returns the timed
/// batch: `n` round trips from this process.
///
/// # Errors
///
/// The fork failed, or an end could not be opened.
pub fn ping_pong<C: Channel + 'static>(
    channel: C,
    child_core: usize,
) -> Result<Batch<'static>, String> {
    let control = Shared::<Control>::new()?;
    let ctl = control.get();
    let child = fork_child(child_core, || answer(&channel, ctl))?;
    let ready = await_child(child, "opening its end", Duration::from_micros(100), || {
        ctl.ready.load(Ordering::Acquire) != 0
    });
    let end = match ready.and_then(|()| channel.end(PINGER)) {
        Ok(e) => e,
        Err(e) => {
            kill(child);
            reap(&[child]);
            return Err(e);
        }
    };
    let mut echo = Echo {
        end: Some(end),
        child,
        control,
        _channel: channel,
    };
    Ok(Box::new(move |n| {
        for _ in 0..n {
            echo.round_trip().expect("ping-pong round trip");
        }
    }))
}
