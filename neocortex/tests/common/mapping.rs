//! The segment as this process maps it: where (`/proc/self/maps`), made read-only, or
//! attached a second time by id to look at or forge its bytes.

use neocortex_sys::shm;

/// Where this process maps the segment of `key`: `(address, length)` of its one mapping,
/// from `/proc/self/maps` (the kernel names SysV mappings `/SYSV<key in hex>`).
pub fn mapping_of(key: i32) -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let name = format!("/SYSV{:08x}", key as u32);
    let line = maps.lines().find(|l| l.contains(&name))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some((start, end - start))
}

/// Makes this process's mapping of the segment of `key` read-only: from now on, any store
/// this process makes to the segment (the header, the lock word, the value) kills it with
/// `SIGSEGV`. How a test proves that a reader never writes shared memory.
pub fn make_mapping_read_only(key: i32) -> bool {
    let Some((addr, len)) = mapping_of(key) else {
        return false;
    };
    // SAFETY: narrows the protection of a whole SysV mapping of this (child) process; the
    // memory stays mapped, and every later write to it is meant to fault.
    unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_READ) == 0 }
}

/// A second, raw attachment of a segment (`shmat` by id, outside neocortex), for a test
/// that looks at or forges bytes the way a peer outside the trust model could; detached on
/// drop.
pub struct RawMapping {
    addr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl RawMapping {
    /// Attaches segment `id` read-write.
    pub fn attach(id: i32) -> Self {
        let len = shm::stat(id).expect("IPC_STAT the segment").size as usize;
        // SAFETY: a segment this test made; every access through this mapping is to bytes
        // (`bytes`, `write`), done while no neocortex handle of this test touches the value.
        let addr = unsafe { shm::attach(id, 0) }.expect("shmat the segment");
        Self { addr, len }
    }

    /// A copy of every byte of the segment.
    pub fn bytes(&self) -> Vec<u8> {
        let base = self.addr.as_ptr().cast::<u8>();
        // Byte by byte, volatile: other processes may hold the segment mapped.
        (0..self.len)
            .map(|i| {
                let at = base.wrapping_add(i);
                // SAFETY: `i < len`: `at` lies inside the mapping, which lives as long as
                // `self`.
                unsafe { std::ptr::read_volatile(at) }
            })
            .collect()
    }

    /// Where `needle` first occurs in the segment.
    pub fn find(&self, needle: &[u8]) -> Option<usize> {
        self.bytes().windows(needle.len()).position(|w| w == needle)
    }

    /// Overwrites the bytes at `offset` with `bytes`.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len, "a write past the segment");
        let base = self.addr.as_ptr().cast::<u8>();
        for (i, &b) in bytes.iter().enumerate() {
            let at = base.wrapping_add(offset + i);
            // SAFETY: inside the mapping (checked above), which lives as long as `self`.
            unsafe { std::ptr::write_volatile(at, b) };
        }
    }
}

impl Drop for RawMapping {
    fn drop(&mut self) {
        // SAFETY: the address `shmat` returned, detached once; nothing borrowed from it
        // outlives `self`.
        let _ = unsafe { shm::detach(self.addr) };
    }
}

/// The bytes of a value of a type without padding (every `ShmSafe` type).
pub fn bytes_of<T: neocortex::ShmSafe>(value: &T) -> Vec<u8> {
    // SAFETY: `T: ShmSafe` has no padding, so all `size_of::<T>()` bytes are initialised.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
    .to_vec()
}
