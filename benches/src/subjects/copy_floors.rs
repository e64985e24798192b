//! The copy and lifecycle floors: a load or `memcpy` to or from a SysV segment, and the
//! bare create/attach cycles of a segment and a semaphore set.

use std::hint::black_box;
use std::io;
use std::ptr::NonNull;

use super::lock_floors::VALUE_OFFSET;
use super::{big_source, show, timed, Case, Payload, Setup, BIG, PAGE, SLICE};
use crate::cleanup::{key_for, Leftover};
use crate::floors::{
    attach_id, create_sem_set, detach_addr, remove_segment, remove_sem_set, SysvSegment,
};

/// A fresh SysV segment of `len` bytes, every byte written (so reads see real pages, not
/// the shared zero page).
fn filled_segment(len: usize) -> Result<SysvSegment, String> {
    let seg = SysvSegment::create(key_for(Leftover::RawKey), len).map_err(show)?;
    // SAFETY: the segment has `len` bytes and nobody else uses it.
    unsafe { seg.as_ptr().write_bytes(0x5a, len) };
    Ok(seg)
}

/// A timed batch that copies `len` bytes out of a filled segment `n` times.
fn copy_out(len: usize) -> Result<Setup, String> {
    let seg = filled_segment(len)?;
    let mut buf = vec![0u8; len];
    timed(move |n| {
        for _ in 0..n {
            // SAFETY: the segment has `len` bytes and `buf` is a separate `len`-byte buffer.
            unsafe { libc::memcpy(black_box(buf.as_mut_ptr()).cast(), seg.as_ptr().cast(), len) };
        }
    })
}

/// `shmget(IPC_CREAT|IPC_EXCL)` + `shmat` + `init` + a `u64` written + `shmdt` + `IPC_RMID`.
pub(super) fn shm_cycle(key: i32, init: impl FnOnce(*mut u8)) -> io::Result<()> {
    // SAFETY: shmget takes plain values.
    let id = unsafe {
        libc::shmget(
            key,
            VALUE_OFFSET + 8,
            libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
        )
    };
    if id == -1 {
        return Err(io::Error::last_os_error());
    }
    let addr = match attach_id(id) {
        Ok(a) => a,
        Err(e) => {
            remove_segment(id);
            return Err(e);
        }
    };
    init(addr.as_ptr());
    // SAFETY: the value's offset is inside the segment and 8-byte aligned.
    unsafe {
        addr.as_ptr()
            .wrapping_add(VALUE_OFFSET)
            .cast::<u64>()
            .write(7)
    };
    // SAFETY: attached above; nothing refers into the mapping any more.
    let detached = unsafe { detach_addr(addr) };
    let removed = remove_segment(id);
    detached?;
    if removed {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// No lock: a load or a `memcpy`.
///
/// # Errors
///
/// Creating the segment failed.
pub fn memcpy_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let seg = SysvSegment::create(key_for(Leftover::RawKey), 8).map_err(show)?;
            let p = NonNull::new(seg.as_ptr().cast::<u64>()).ok_or("null segment")?;
            timed(move |n| {
                let _seg = &seg;
                for _ in 0..n {
                    // SAFETY: `p` is the aligned start of the live segment.
                    black_box(unsafe { p.as_ptr().read_volatile() });
                }
            })
        }
        Case::Read4k => copy_out(PAGE),
        Case::SliceRead1m => copy_out(SLICE),
        Case::Write4k => {
            let seg = SysvSegment::create(key_for(Leftover::RawKey), PAGE).map_err(show)?;
            let v = <[u8; PAGE]>::initial();
            timed(move |n| {
                for _ in 0..n {
                    // SAFETY: the segment has PAGE bytes and `v` is a separate PAGE-byte value.
                    unsafe {
                        libc::memcpy(seg.as_ptr().cast(), black_box(v.as_ptr()).cast(), PAGE)
                    };
                }
            })
        }
        Case::Inplace64m => {
            let seg = SysvSegment::create(key_for(Leftover::RawKey), BIG).map_err(show)?;
            let src = big_source();
            timed(move |n| {
                for _ in 0..n {
                    // SAFETY: the segment has BIG bytes and `src` is a separate BIG-byte buffer.
                    unsafe {
                        libc::memcpy(seg.as_ptr().cast(), black_box(src.as_ptr()).cast(), BIG)
                    };
                }
            })
        }
        Case::Contended8b
        | Case::Contended4k
        | Case::Seqlock1w1r
        | Case::CreateDrop
        | Case::AttachDetach
        | Case::Takeover
        | Case::NotifyRoundtrip => Ok(Setup::Unsupported(
            "no lock and no segment lifecycle: floor of the copy only",
        )),
    }
}

/// The bare segment (and semaphore set) lifecycle.
///
/// # Errors
///
/// Creating the segment failed.
pub fn cycle_setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::CreateDrop => {
            let key = key_for(Leftover::RawKey);
            timed(move |n| {
                for _ in 0..n {
                    shm_cycle(key, |_| ()).expect("shm cycle");
                    let id = create_sem_set(libc::IPC_PRIVATE).expect("semget");
                    assert!(remove_sem_set(id), "semctl IPC_RMID");
                }
            })
        }
        Case::AttachDetach => {
            let key = key_for(Leftover::RawKey);
            let owner = SysvSegment::create(key, VALUE_OFFSET + 8).map_err(show)?;
            timed(move |n| {
                let _owner = &owner;
                for _ in 0..n {
                    drop(black_box(
                        SysvSegment::attach(key, VALUE_OFFSET + 8).expect("shmget+shmat"),
                    ));
                }
            })
        }
        _ => Ok(Setup::Unsupported(
            "segment lifecycle floor only (create_drop, attach_detach)",
        )),
    }
}
