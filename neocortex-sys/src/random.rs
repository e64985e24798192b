//! Random bytes from the kernel, `getrandom(2)`.

use crate::errno::{SysError, SysResult};
use crate::Errno;

/// Fills `buf` with random bytes from the kernel's pool, retrying on `EINTR`.
///
/// # Errors
///
/// The `errno` of `getrandom`, which on Linux only fails before the pool is initialised
/// with `GRND_NONBLOCK`, not used here.
pub fn fill(buf: &mut [u8]) -> SysResult<()> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn fills_with_varying_bytes() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
