//! Pinning the calling thread to one core (`sched_setaffinity(2)`).

use std::io;
use std::mem::MaybeUninit;

/// The cores this process may run on, in ascending order (`sched_getaffinity(2)`).
///
/// # Errors
///
/// The `sched_getaffinity` error.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    let mut set = MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: `set` is a writable cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), set.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised above and filled by the kernel; every bit pattern is valid.
    let set = unsafe { set.assume_init() };
    let max = 8 * size_of::<libc::cpu_set_t>();
    Ok((0..max)
        // SAFETY: `cpu` is below the set's capacity in bits.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread (and the children it forks later) to `core`.
///
/// # Errors
///
/// The `sched_setaffinity` error, e.g. `EINVAL` for a core outside the allowed set.
pub fn pin_to(core: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set, a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `core` is below the set's capacity in bits (checked above).
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The two cores the harness uses: the main process and the writer on the first, the reader
/// on the second (the same core twice when only one is allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorePair {
    /// The main process, the uncontended cases and the writer.
    pub first: usize,
    /// The reader of the contended cases.
    pub second: usize,
}

impl CorePair {
    /// The first two allowed cores.
    ///
    /// # Errors
    ///
    /// The `sched_getaffinity` error, or no core allowed at all.
    pub fn detect() -> io::Result<Self> {
        let cores = allowed_cores()?;
        let first = *cores
            .first()
            .ok_or_else(|| io::Error::other("no core in the affinity mask"))?;
        let second = cores.get(1).copied().unwrap_or(first);
        Ok(Self { first, second })
    }

    /// The core for a contended role: 0 is the writer, 1 the reader.
    pub fn for_role(self, role: usize) -> usize {
        if role == 0 {
            self.first
        } else {
            self.second
        }
    }
}
