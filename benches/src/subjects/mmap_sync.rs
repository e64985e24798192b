//! `mmap-sync` 2.0 (Cloudflare): one writer, wait-free readers. The value is serialised
//! with `rkyv` into the other of two data files (in `/dev/shm`, as its README advises) and
//! a state file switches readers over; readers count themselves in the state file and
//! read in place (zero-copy). Here a read copies the value out, as `read()` does.
//!
//! The writer's wait for readers to leave the copy it is about to overwrite spins
//! (`SD = 0`): the default sleeps a whole second each time it finds one there.

use std::hint::black_box;
use std::time::Duration;

use mmap_sync::locks::LockDisabled;
use mmap_sync::synchronizer::Synchronizer;
use wyhash::WyHash;

use super::{read_4k_batch, side, timed, Case, Payload, Setup, PAGE, SLICE};
use crate::cleanup::{posix_name_for, register, Leftover};
use crate::contended::Pair;
use crate::measure::Batch;

/// The synchronizer as the harness uses it: no write lock (one writer), 1 KiB of scratch,
/// and a spinning wait for readers (`SD = 0`).
type Sync0 = Synchronizer<WyHash, LockDisabled, 1024, 0>;

/// How long a writer waits for a reader to leave a copy before it assumes the reader died.
const GRACE: Duration = Duration::from_secs(1);

/// The three files of one synchronizer, removed on drop.
struct Files {
    /// `/dev/shm/...`: the synchronizer's path prefix.
    prefix: String,
}

const SUFFIXES: [&str; 3] = ["_state", "_data_0", "_data_1"];

impl Files {
    fn new(tag: &str) -> Self {
        let name = posix_name_for(tag);
        for s in SUFFIXES {
            register(Leftover::PosixShm(format!("{name}{s}")));
        }
        Self {
            prefix: format!("/dev/shm{name}"),
        }
    }

    fn open(&self) -> Sync0 {
        Sync0::with_params(self.prefix.as_ref())
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for s in SUFFIXES {
            let _ = std::fs::remove_file(format!("{}{s}", self.prefix));
        }
    }
}

/// `Synchronizer::write` with the harness's grace period, the error as text (a macro: the
/// method's bounds name `rkyv` types this crate does not depend on).
macro_rules! mms_write {
    ($s:expr, $value:expr) => {
        $s.write($value, GRACE).map(drop).map_err(|e| e.to_string())
    };
}

/// Files holding `value`, written twice so that both data files exist.
macro_rules! published {
    ($tag:expr, $value:expr) => {{
        let files = Files::new($tag);
        let mut writer = files.open();
        mms_write!(writer, $value)?;
        mms_write!(writer, $value)?;
        Ok::<Files, String>(files)
    }};
}

fn read_u64(s: &mut Sync0) -> u64 {
    // SAFETY: the result is dropped before this returns, well within the writer's grace
    // period; the bytes were written by a writer of the same type (checked by rkyv when
    // written).
    *unsafe { s.read::<u64>(false) }.expect("mmap-sync read")
}

struct MmapSyncPair {
    files: Files,
}

impl Pair for MmapSyncPair {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let mut writer = self.files.open();
        let mut reader = self.files.open();
        Ok(side::<u64>(
            role,
            move |v| mms_write!(writer, &v).expect("mmap-sync write"),
            move || read_u64(&mut reader),
        ))
    }
}

/// Builds what `mmap-sync` runs for `case`.
///
/// # Errors
///
/// A message saying why writing the first value failed.
pub fn setup(case: Case) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let files = published!("mr8", &7u64)?;
            let mut reader = files.open();
            timed(move |n| {
                let _files = &files;
                for _ in 0..n {
                    black_box(read_u64(&mut reader));
                }
            })
        }
        Case::Read4k => {
            let files = published!("mr4k", &<[u8; PAGE]>::initial())?;
            let mut reader = files.open();
            read_4k_batch(move || {
                let _files = &files;
                // SAFETY: as in `read_u64`.
                *unsafe { reader.read::<[u8; PAGE]>(false) }.expect("mmap-sync read")
            })
        }
        Case::Write4k => {
            let v = <[u8; PAGE]>::initial();
            let files = published!("mw4k", &v)?;
            let mut writer = files.open();
            timed(move |n| {
                let _files = &files;
                for _ in 0..n {
                    mms_write!(writer, black_box(&v)).expect("mmap-sync write");
                }
            })
        }
        Case::SliceRead1m => {
            let files = published!("ms1m", &vec![0x5a_u8; SLICE])?;
            let mut reader = files.open();
            let mut buf = vec![0u8; SLICE];
            timed(move |n| {
                let _files = &files;
                for _ in 0..n {
                    // SAFETY: as in `read_u64`.
                    let r = unsafe { reader.read::<Vec<u8>>(false) }.expect("mmap-sync read");
                    black_box(&mut buf).copy_from_slice(r.as_slice());
                }
            })
        }
        Case::Seqlock1w1r => {
            let files = published!("m1w1r", &u64::initial())?;
            Ok(Setup::SoloAndPair(Box::new(MmapSyncPair { files })))
        }
        Case::Contended8b | Case::Contended4k => Ok(Setup::Unsupported(
            "one writer and wait-free readers: its two-process figures are in seqlock_1w1r",
        )),
        Case::CreateDrop | Case::AttachDetach => Ok(Setup::Unsupported(
            "not measured: three files, no segment or lock to create",
        )),
        Case::Inplace64m => Ok(Setup::Unsupported(
            "no in-place writes: every write serialises a whole new copy into the other file",
        )),
        Case::Takeover => Ok(Setup::Unsupported(
            "no lock to take over: one writer by design, and readers never block",
        )),
        Case::NotifyRoundtrip => Ok(Setup::Unsupported(
            "no change notification: readers poll the version",
        )),
    }
}
