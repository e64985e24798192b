//! Random bytes from the kernel: `getrandom(2)` on Linux and FreeBSD, `arc4random_buf(3)`
//! (seeded by the kernel) elsewhere, e.g. on macOS, which has no `getrandom`.

use crate::errno::SysResult;

/// Fills `buf` with random bytes from the kernel's pool, retrying on `EINTR`.
///
/// # Errors
///
/// The `errno` of `getrandom` on Linux and FreeBSD, which only fails before the pool is
/// initialised with `GRND_NONBLOCK`, not used here. Never on other systems:
/// `arc4random_buf` cannot fail.
pub fn fill(buf: &mut [u8]) -> SysResult<()> {
    imp::fill(buf)
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod imp {
    use crate::errno::{SysError, SysResult};
    use crate::Errno;

    pub(super) fn fill(buf: &mut [u8]) -> SysResult<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: the pointer and length describe `rest`, a live mutable slice.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let err = SysError::last("getrandom");
                if err.errno == Errno::EINTR {
                    continue;
                }
                return Err(err);
            }
            done += n as usize;
        }
        Ok(())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
mod imp {
    use crate::errno::SysResult;

    pub(super) fn fill(buf: &mut [u8]) -> SysResult<()> {
        // SAFETY: the pointer and length describe `buf`, a live mutable slice;
        // arc4random_buf(3) writes exactly that many bytes and cannot fail.
        unsafe { libc::arc4random_buf(buf.as_mut_ptr().cast(), buf.len()) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_with_varying_bytes() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b);
        super::fill(&mut []).unwrap();
    }
}
