//! Who created a segment, and whether that process is still alive.
//!
//! A pid alone can be reused by an unrelated process; a pid together with the process's start
//! time cannot. On Linux the start time is field 22 of `/proc/<pid>/stat` (clock ticks since
//! boot); on macOS and FreeBSD the kernel reports it
//! (`neocortex_sys::process::proc_start_time`). Whenever a start time is not known, the
//! answer is "alive": nothing that may be live is ever reclaimed.

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(target_os = "linux")]
use neocortex_sys::process::clock_ticks_per_second;
use neocortex_sys::process::{current_pid, pid_exists};

/// A process, identified so that pid reuse cannot fool a liveness check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    /// The pid.
    pub(crate) pid: i32,
    /// Start time as [`start_ticks`] gives it (clock ticks after boot on Linux, 1/100 s
    /// elsewhere), or 0 when it is not known.
    pub(crate) start_ticks: u64,
}

impl ProcessIdentity {
    /// The calling process. The start time is read once per process: it is cached with the
    /// pid it belongs to, so a forked child reads its own.
    #[inline]
    pub(crate) fn current() -> Self {
        static CACHE: AtomicU64 = AtomicU64::new(0);
        let pid = current_pid();
        let cached = CACHE.load(Ordering::Relaxed);
        // The cache holds (pid << 40) | start ticks (ticks fit in 40 bits for ~348 years at
        // 100 Hz, counted from boot on Linux and from 1970 elsewhere).
        if cached != 0 && (cached >> 40) as i32 == pid {
            return Self {
                pid,
                start_ticks: cached & ((1 << 40) - 1),
            };
        }
        let ticks = start_ticks(pid).unwrap_or(0);
        if ticks < (1 << 40) && pid > 0 {
            CACHE.store(((pid as u64) << 40) | ticks, Ordering::Relaxed);
        }
        Self {
            pid,
            start_ticks: ticks,
        }
    }

    /// Whether this very process is still running (not a later process with the same pid).
    pub(crate) fn is_alive(self) -> bool {
        if !pid_exists(self.pid) {
            return false;
        }
        match start_ticks(self.pid) {
            Some(now) if self.start_ticks != 0 => now == self.start_ticks,
            // Without start times, trust the pid: the conservative answer for reclaiming.
            _ => true,
        }
    }
}

/// Whether the process `pid`, which created something at `created_at` (seconds since the
/// epoch, as `shm_ctime` gives it), is still alive. A process with that pid that started after
/// `created_at` is a different process.
pub(crate) fn creator_alive_at(pid: i32, created_at: i64) -> bool {
    if pid <= 0 {
        // The kernel reports 0 for a creator in another pid namespace: unknown, so alive.
        return true;
    }
    if !pid_exists(pid) {
        return false;
    }
    match started_at(pid) {
        // One second of slack for the rounding of both clocks.
        Some(started) => started <= created_at + 1,
        None => true,
    }
}

/// The identity of this process's pid namespace: the inode number of `/proc/self/ns/pid`
/// (equal for two processes exactly when they share a pid namespace), or 0 when unknown.
pub(crate) fn pid_namespace() -> u64 {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// A stamp of when `pid` started, equal for the same process and different for a later one
/// with the same pid: on Linux its start in clock ticks after boot (field 22 of
/// `/proc/<pid>/stat`); elsewhere the kernel's start stamp in 1/100 s. `None` when unknown.
#[cfg(target_os = "linux")]
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// A stamp of when `pid` started, equal for the same process and different for a later one
/// with the same pid: on Linux its start in clock ticks after boot (field 22 of
/// `/proc/<pid>/stat`); elsewhere the kernel's start stamp in 1/100 s. `None` when unknown.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
    let start = neocortex_sys::process::proc_start_time(pid)?;
    Some(start.stamp_micros / 10_000)
}

/// When `pid` started, in seconds since the epoch by the current clock.
#[cfg(target_os = "linux")]
fn started_at(pid: i32) -> Option<i64> {
    let ticks = start_ticks(pid)?;
    let secs = i64::try_from(ticks / clock_ticks_per_second()).ok()?;
    boot_time()?.checked_add(secs)
}

/// When `pid` started, in seconds since the epoch by the current clock.
#[cfg(not(target_os = "linux"))]
fn started_at(pid: i32) -> Option<i64> {
    neocortex_sys::process::proc_start_time(pid).map(|start| start.epoch_secs)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted from the last `)`.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards; field 22 is the 20th of those.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(target_os = "linux")]
fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_boot_time(&stat)
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_boot_time(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 100";
        assert_eq!(parse_start_ticks(line), Some(424_242));
        assert_eq!(parse_start_ticks("1 (x) S 1"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn current_process_is_alive_and_a_forged_start_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.start_ticks > 0);
        assert!(me.is_alive());
        assert!(!ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me
        }
        .is_alive());
        assert!(!ProcessIdentity {
            pid: i32::MAX,
            start_ticks: 1
        }
        .is_alive());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        assert!(creator_alive_at(me.pid, now));
        assert!(
            !creator_alive_at(me.pid, 1000),
            "a segment made before this process started"
        );
        #[cfg(target_os = "linux")]
        assert_ne!(pid_namespace(), 0);
    }
}
