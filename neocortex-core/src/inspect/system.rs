//! The kernel's SysV IPC limits and how much of them is in use, for `neocortex doctor`.
#![cfg_attr(
    not(target_os = "linux"),
    expect(dead_code, reason = "the parsers read Linux's /proc only")
)]

#[cfg(target_os = "linux")]
use super::proc;
use crate::error::CortexResult;
use crate::members::DEFAULT_SLOTS;

/// Semaphores in the members set of a segment made with the default `max_handles`: two
/// (the reaper and the watchers count) plus 64 slots. `kernel.sem`'s `SEMMSL` (the most
/// semaphores a set may have) must be at least this, or `Cortex::new` fails with
/// `LimitReached`; `CortexBuilder::max_handles` makes smaller or larger sets.
pub const MEMBERS_SET_SEMAPHORES: u64 = 2 + DEFAULT_SLOTS as u64;

/// The kernel's SysV IPC limits (`/proc/sys/kernel/{shmmax,shmall,shmmni,sem}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest segment, in bytes (`kernel.shmmax`).
    pub shmmax: u64,
    /// All segments together, in pages (`kernel.shmall`).
    pub shmall: u64,
    /// The most segments (`kernel.shmmni`).
    pub shmmni: u64,
    /// The most semaphores in one set (`SEMMSL`, the first field of `kernel.sem`).
    pub semmsl: u64,
    /// The most semaphores in all sets together (`SEMMNS`).
    pub semmns: u64,
    /// The most operations in one `semop` (`SEMOPM`).
    pub semopm: u64,
    /// The most semaphore sets (`SEMMNI`).
    pub semmni: u64,
    /// The page size `shmall` counts in, in bytes.
    pub page_size: u64,
}

/// How much of the limits is in use in this IPC namespace (`/proc/sysvipc/{shm,sem}`), by
/// every user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Segments.
    pub segments: u64,
    /// Their sizes together, in bytes.
    pub segment_bytes: u64,
    /// Their sizes together, in pages (each rounded up), as `shmall` counts.
    pub segment_pages: u64,
    /// The largest segment, in bytes.
    pub largest_segment: u64,
    /// Semaphore sets.
    pub semaphore_sets: u64,
    /// Semaphores in all sets together.
    pub semaphores: u64,
    /// The largest set, in semaphores.
    pub largest_set: u64,
}

/// Parses `kernel.sem`: `SEMMSL SEMMNS SEMOPM SEMMNI`.
fn parse_sem(text: &str) -> Option<[u64; 4]> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let mut out = [0; 4];
    for slot in &mut out {
        *slot = fields.next()?.ok()?;
    }
    Some(out)
}

/// Counts the segments and sets listed in the texts of `/proc/sysvipc/shm` and `sem`.
pub(super) fn count(shm: &str, sem: &str, page_size: u64) -> Usage {
    let mut usage = Usage::default();
    let page = page_size.max(1);
    for (_, _, ds) in super::proc::parse_shm(shm) {
        usage.segments += 1;
        usage.segment_bytes += ds.size;
        usage.segment_pages += ds.size.div_ceil(page);
        usage.largest_segment = usage.largest_segment.max(ds.size);
    }
    let (names, raw) = super::proc::table(sem);
    for row in super::proc::rows(&names, raw) {
        let Some(nsems) = row.get::<u64>("nsems") else {
            continue;
        };
        usage.semaphore_sets += 1;
        usage.semaphores += nsems;
        usage.largest_set = usage.largest_set.max(nsems);
    }
    usage
}

/// The kernel's SysV IPC limits.
///
/// # Errors
///
/// A system error when `/proc/sys/kernel` cannot be read or says something unexpected; off
/// Linux, an error of kind `Other` that says it is not supported there.
#[cfg(target_os = "linux")]
pub fn limits() -> CortexResult<Limits> {
    const OP: &str = "read IPC limits";
    let number = |path: &'static str| -> CortexResult<u64> {
        let text = proc::read(OP, path)?;
        text.trim().parse().map_err(|_| malformed(OP, path))
    };
    let sem_path = "/proc/sys/kernel/sem";
    let [semmsl, semmns, semopm, semmni] =
        parse_sem(&proc::read(OP, sem_path)?).ok_or_else(|| malformed(OP, sem_path))?;
    Ok(Limits {
        shmmax: number("/proc/sys/kernel/shmmax")?,
        shmall: number("/proc/sys/kernel/shmall")?,
        shmmni: number("/proc/sys/kernel/shmmni")?,
        semmsl,
        semmns,
        semopm,
        semmni,
        page_size: neocortex_sys::process::page_size() as u64,
    })
}

#[cfg(target_os = "linux")]
fn malformed(op: &'static str, path: &'static str) -> crate::CortexError {
    crate::CortexError::clean_with_hint(
        op,
        0,
        crate::ErrorKind::Other,
        crate::OsError::new(path, libc::EINVAL),
        "the file does not hold what Linux writes there",
    )
}

/// The kernel's SysV IPC limits (not readable here).
///
/// # Errors
///
/// Always: an error of kind `Other` that says it is not supported off Linux.
#[cfg(not(target_os = "linux"))]
pub fn limits() -> CortexResult<Limits> {
    Err(super::proc::unsupported(
        "read IPC limits",
        "/proc/sys/kernel/sem",
    ))
}

/// How much of the limits is in use in this IPC namespace.
///
/// # Errors
///
/// A system error when `/proc/sysvipc` cannot be read; off Linux, an error of kind `Other`
/// that says it is not supported there.
#[cfg(target_os = "linux")]
pub fn usage() -> CortexResult<Usage> {
    const OP: &str = "count IPC objects";
    let shm = proc::read(OP, "/proc/sysvipc/shm")?;
    let sem = proc::read(OP, "/proc/sysvipc/sem")?;
    Ok(count(
        &shm,
        &sem,
        neocortex_sys::process::page_size() as u64,
    ))
}

/// How much of the limits is in use (not countable here).
///
/// # Errors
///
/// Always: an error of kind `Other` that says it is not supported off Linux.
#[cfg(not(target_os = "linux"))]
pub fn usage() -> CortexResult<Usage> {
    Err(super::proc::unsupported(
        "count IPC objects",
        "/proc/sysvipc/shm",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sem_has_four_numbers() {
        assert_eq!(
            parse_sem("32000\t1024000000\t500\t32000\n"),
            Some([32000, 1_024_000_000, 500, 32000])
        );
        assert_eq!(parse_sem("250 32000 32"), None);
        assert_eq!(parse_sem("250 x 32 128"), None);
        assert_eq!(MEMBERS_SET_SEMAPHORES, 66);
    }

    #[test]
    fn usage_adds_up_segments_in_pages_and_semaphores() {
        let shm = "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime
1 1 600 4097 10 0 0 0 0 0 0 0 0 0
2 2 600 100 10 0 1 0 0 0 0 0 0 0
";
        let sem = "key semid perms nsems uid gid cuid cgid otime ctime
0 1 600 66 0 0 0 0 0 0
0 2 600 3 0 0 0 0 0 0
0 3 600 x 0 0 0 0 0 0
";
        let usage = count(shm, sem, 4096);
        assert_eq!(
            usage,
            Usage {
                segments: 2,
                segment_bytes: 4197,
                segment_pages: 3,
                largest_segment: 4097,
                semaphore_sets: 2,
                semaphores: 69,
                largest_set: 66,
            }
        );
        assert_eq!(count("", "", 0), Usage::default());
    }
}
