//! Values of run-time length and fixed-capacity types (issue 11), across processes: a slice
//! made by one process is attached with its length by another; every layout mismatch is a
//! `LayoutMismatch` naming both sides; zero-length slices work; wrong lengths are
//! `InvalidInput`; a 16 GiB zeroed slice costs no memory; huge pages are refused cleanly
//! when none are reserved; `FixedString`/`FixedVec` round-trip and never trust a forged
//! length; and readers never see a torn slice under any built-in lock.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::mapping::RawMapping;
use common::{fork, unique_key, Made, Pipe};
use neocortex::{
    shm_safe, Cortex, CortexBuilder, CortexSync, ErrorKind, FixedString, FixedVec, RwSemaphore,
    Semaphore, SeqLock, SysvSemaphore,
};

fn finish<T: ?Sized + neocortex::Value, L: CortexSync>(cortex: Cortex<T, L>) {
    let made = Made::of(&cortex);
    drop(cortex);
    made.assert_gone();
}

fn a_child_attaches_a_slice_with_its_length_and_writes_back<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Cortex<[u32], L> = Cortex::new_slice(key, 1000, 7, None).unwrap();
    cortex.update(|s| s[999] = 999).unwrap();
    let child = fork(|| {
        let Ok(c) = Cortex::<[u32], L>::attach(key) else {
            return 2;
        };
        if c.len() != 1000 || c.is_empty() {
            return 3;
        }
        let mut seen = vec![0u32; 1000];
        if c.read_into(&mut seen).is_err() || seen[..999] != [7; 999] || seen[999] != 999 {
            return 4;
        }
        let ours: Vec<u32> = (0..1000).collect();
        if c.write_from(&ours).is_err() || c.update(|s| s[0] = 5000).is_err() {
            return 5;
        }
        0
    });
    child.expect_success("attach, read and write the slice");
    let mut expected: Vec<u32> = (0..1000).collect();
    expected[0] = 5000;
    assert_eq!(cortex.to_vec().unwrap(), expected);
    assert_eq!(cortex.len(), 1000);
    finish(cortex);
}

#[test]
fn a_child_attaches_a_semaphore_slice_with_its_length_and_writes_back() {
    let _guard = common::watchdog();
    a_child_attaches_a_slice_with_its_length_and_writes_back::<Semaphore>("slice_child_semaphore");
}

#[test]
fn a_child_attaches_a_seqlock_slice_with_its_length_and_writes_back() {
    let _guard = common::watchdog();
    a_child_attaches_a_slice_with_its_length_and_writes_back::<SeqLock>("slice_child_seqlock");
}

/// Asserts `result` is a `LayoutMismatch` whose message names both `expected` and `found`.
#[track_caller]
fn assert_mismatch<T>(result: neocortex::CortexResult<T>, expected: &str, found: &str) {
    let e = result.err().expect("a mismatched attach must fail");
    assert_eq!(e.kind(), ErrorKind::LayoutMismatch, "{e}");
    let message = e.to_string();
    assert!(
        message.contains(expected) && message.contains(found),
        "the message must name both sides ({expected} and {found}): {message}"
    );
}

#[test]
fn every_slice_layout_mismatch_names_both_sides() {
    let _guard = common::watchdog();
    let key = unique_key("slice_layout_mismatch");
    let slice: Cortex<[u32], Semaphore> = Cortex::new_slice(key, 100, 1, None).unwrap();
    let value_key = unique_key("slice_layout_mismatch_value");
    let value: Cortex<[u32; 4], Semaphore> = Cortex::new(value_key, [1; 4], None).unwrap();
    // A single `u32` and a slice of one `u32` have the same element and the same size.
    let one_key = unique_key("slice_layout_mismatch_one");
    let one: Cortex<u32, Semaphore> = Cortex::new(one_key, 1, None).unwrap();
    let single_key = unique_key("slice_layout_mismatch_single");
    let single: Cortex<[u32], Semaphore> = Cortex::new_slice(single_key, 1, 1, None).unwrap();
    // Checked in another process, as a real attacher would.
    let child = fork(|| {
        assert_mismatch(
            Cortex::<[u64], Semaphore>::attach(key),
            "`[u64]`",
            "`[u32]`",
        );
        assert_mismatch(Cortex::<u32, Semaphore>::attach(key), "`u32`", "`[u32]`");
        assert_mismatch(
            Cortex::<[u32; 100], Semaphore>::attach(key),
            "`[u32; 100]`",
            "`[u32]`",
        );
        assert_mismatch(
            Cortex::<[u32], Semaphore>::attach(value_key),
            "`[u32]`",
            "`[u32; 4]`",
        );
        assert_mismatch(
            Cortex::<[u32], Semaphore>::attach(one_key),
            "`[u32]`",
            "`u32`",
        );
        assert_mismatch(
            Cortex::<u32, Semaphore>::attach(single_key),
            "`u32`",
            "`[u32]`",
        );
        assert_mismatch(
            Cortex::<[u32], SeqLock>::attach(key),
            "seqlock",
            "semaphore",
        );
        // The length a slice's attacher is told comes from the segment.
        let found = Cortex::<[u32], Semaphore>::attach(key).unwrap();
        assert_eq!(found.len(), 100);
        0
    });
    child.expect_success("every mismatch refused, naming both sides");
    finish(slice);
    finish(value);
    finish(one);
    finish(single);
}

fn a_zero_length_slice_works<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Cortex<[u64], L> = Cortex::new_slice_zeroed(key, 0, None).unwrap();
    assert!(cortex.is_empty());
    assert_eq!(cortex.len(), 0);
    let child = fork(|| {
        let Ok(c) = Cortex::<[u64], L>::attach(key) else {
            return 2;
        };
        let mut none: [u64; 0] = [];
        if !c.is_empty() || c.read_into(&mut none).is_err() || c.write_from(&[]).is_err() {
            return 3;
        }
        match c.to_vec() {
            Ok(v) if v.is_empty() => 0,
            _ => 4,
        }
    });
    child.expect_success("attach and use an empty slice");
    assert_eq!(cortex.to_vec().unwrap(), Vec::<u64>::new());
    let made = Made::of(&cortex);
    cortex.remove().unwrap();
    made.assert_gone();
}

#[test]
fn a_zero_length_semaphore_slice_works() {
    let _guard = common::watchdog();
    a_zero_length_slice_works::<Semaphore>("slice_empty_semaphore");
}

#[test]
fn a_zero_length_seqlock_slice_works() {
    let _guard = common::watchdog();
    a_zero_length_slice_works::<SeqLock>("slice_empty_seqlock");
}

fn wrong_lengths_are_invalid_input<L: CortexSync>(name: &str) {
    let key = unique_key(name);
    let cortex: Cortex<[u16], L> = Cortex::new_slice(key, 8, 3, None).unwrap();
    let version = cortex.version();
    for len in [0, 7, 9, 1000] {
        let mut out = vec![0u16; len];
        let e = cortex.read_into(&mut out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "read_into({len}): {e}");
        assert!(out.iter().all(|&x| x == 0), "nothing copied");
        let e = cortex.write_from(&vec![9u16; len]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "write_from({len}): {e}");
        assert!(e.to_string().contains("8"), "names the slice's length: {e}");
    }
    assert_eq!(cortex.to_vec().unwrap(), vec![3; 8], "nothing written");
    assert_eq!(cortex.version(), version, "a refused write is no change");
    finish(cortex);
}

#[test]
fn wrong_lengths_are_invalid_input_semaphore() {
    let _guard = common::watchdog();
    wrong_lengths_are_invalid_input::<Semaphore>("slice_wrong_length_semaphore");
}

#[test]
fn wrong_lengths_are_invalid_input_seqlock() {
    let _guard = common::watchdog();
    wrong_lengths_are_invalid_input::<SeqLock>("slice_wrong_length_seqlock");
}

/// The `rss` column (bytes resident) of segment `id` in `/proc/sysvipc/shm`.
fn resident_bytes(id: i32) -> u64 {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let rss = header.iter().position(|&h| h == "rss").unwrap();
    let shmid = header.iter().position(|&h| h == "shmid").unwrap();
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[shmid] == id.to_string())
        .map(|f| f[rss].parse().unwrap())
        .unwrap()
}

#[test]
fn a_16_gib_zeroed_slice_is_made_and_removed_without_using_memory() {
    let _guard = common::watchdog();
    const LEN: usize = 16 << 30;
    // A private IPC namespace: its own limits (raised if needed), and nothing else's objects.
    common::in_private_ipc_namespace(|| {
        let need_pages = (LEN as u64).div_ceil(4096) + 1024;
        let shmall: u64 = std::fs::read_to_string("/proc/sys/kernel/shmall")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let shmmax: u64 = std::fs::read_to_string("/proc/sys/kernel/shmmax")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if shmall < need_pages || shmmax < LEN as u64 + (1 << 20) {
            // Root owns this namespace's limits.
            let raised = std::fs::write("/proc/sys/kernel/shmall", need_pages.to_string())
                .and_then(|()| std::fs::write("/proc/sys/kernel/shmmax", (2 * LEN).to_string()));
            if raised.is_err() {
                common::write_stderr(&format!(
                    "SKIPPED: {}: kernel.shmmax/shmall are too low for 16 GiB and cannot be \
                     raised here\n",
                    common::test_name()
                ));
                return;
            }
        }
        let key = unique_key("slice_16_gib");
        let cortex = match Cortex::<[u8], Semaphore>::new_slice_zeroed(key, LEN, None) {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::LimitReached => {
                // Overcommit accounting (vm.overcommit_memory, the machine's memory) refused
                // it: say so loudly; nothing may be left.
                common::write_stderr(&format!(
                    "SKIPPED: {}: this machine refuses a 16 GiB segment: {e}\n",
                    common::test_name()
                ));
                assert!(
                    common::namespace_objects().0.is_empty(),
                    "a refusal left a segment"
                );
                return;
            }
            Err(e) => panic!("creating a 16 GiB zeroed slice: {e}"),
        };
        assert_eq!(cortex.len(), LEN);
        let id = cortex.segment_id();
        assert!(neocortex_sys::shm::stat(id).unwrap().size >= LEN as u64);
        let resident = resident_bytes(id);
        assert!(
            resident < 1 << 20,
            "{resident} bytes resident for a zeroed 16 GiB slice"
        );
        // Another process attaches it (the length comes along) and touches its last byte.
        let child = fork(|| {
            let Ok(c) = Cortex::<[u8], Semaphore>::attach(key) else {
                return 2;
            };
            if c.len() != LEN {
                return 3;
            }
            match c.lock() {
                Ok(mut g) => g[LEN - 1] = 1,
                Err(_) => return 4,
            }
            0
        });
        child.expect_success("attach the 16 GiB slice and write its last byte");
        let resident = resident_bytes(id);
        assert!(
            resident < 1 << 20,
            "{resident} bytes resident after one write"
        );
        assert_eq!(cortex.lock().unwrap()[LEN - 1], 1);
        cortex.remove().unwrap();
        let (segments, sets) = common::namespace_objects();
        assert!(
            segments.is_empty() && sets.is_empty(),
            "left: {segments:?} {sets:?}"
        );
    });
}

/// `HugePages_Total` and `HugePages_Free` from `/proc/meminfo`.
fn huge_pages() -> (u64, u64) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("HugePages_Total:"), field("HugePages_Free:"))
}

#[test]
fn huge_pages_without_a_reservation_are_limit_reached_and_leave_nothing() {
    let _guard = common::watchdog();
    let key = unique_key("slice_huge_pages");
    let (total, free) = huge_pages();
    let built = CortexBuilder::<[u64]>::slice_zeroed(1 << 18)
        .key(key)
        .huge_pages()
        .with_default_lock::<Semaphore>();
    // The kernel lets root (CAP_IPC_LOCK) and the group vm.hugetlb_shm_group use huge
    // pages for SysV segments; anyone else is refused before the pages are counted.
    let group: u32 = std::fs::read_to_string("/proc/sys/vm/hugetlb_shm_group")
        .ok()
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or(0);
    // SAFETY: getegid takes nothing and cannot fail.
    let allowed = common::is_root() || unsafe { libc::getegid() } == group;
    if !allowed {
        let e = built.expect_err("this user may not use huge pages");
        assert_eq!(e.kind(), ErrorKind::LimitReached, "{e}");
        assert!(!e.is_dirty(), "{e}");
        assert!(
            e.to_string().contains("vm.hugetlb_shm_group"),
            "the message names the setting that allows it: {e}"
        );
        common::assert_gone(key, &[], &[]);
    } else if total == 0 {
        let e = built.expect_err("no huge pages are reserved (vm.nr_hugepages is 0)");
        assert_eq!(e.kind(), ErrorKind::LimitReached, "{e}");
        assert!(!e.is_dirty(), "{e}");
        let message = e.to_string();
        assert!(
            message.contains("reserve") && message.contains("vm.nr_hugepages"),
            "the message says to reserve huge pages: {message}"
        );
        common::assert_gone(key, &[], &[]);
    } else if free >= 2 {
        let cortex = built.unwrap();
        cortex.update(|s| s[(1 << 18) - 1] = 5).unwrap();
        let child = fork(|| match Cortex::<[u64], Semaphore>::attach(key) {
            Ok(c) if c.to_vec().ok().and_then(|v| v.last().copied()) == Some(5) => 0,
            _ => 2,
        });
        child.expect_success("attach a huge-page slice");
        finish(cortex);
    } else {
        drop(built);
        // Not a matter of privileges (so not common::skip, which CI turns into a failure).
        common::write_stderr(&format!(
            "SKIPPED: {}: {total} huge pages reserved but only {free} free\n",
            common::test_name()
        ));
    }
}

shm_safe! {
    /// A record with a list and a name in it, as a user declares one.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Tagged {
        /// Up to 8 readings.
        pub samples: FixedVec<u32, 8>,
        /// Up to 32 bytes of text.
        pub name: FixedString<32>,
    }
}

#[test]
fn fixed_string_and_vec_round_trip_and_never_trust_a_forged_length() {
    let _guard = common::watchdog();
    let key = unique_key("slice_fixed_types");
    let first = Tagged {
        samples: FixedVec::try_from(&[1u32, 2, 3][..]).unwrap(),
        name: FixedString::try_from("pump-3").unwrap(),
    };
    let cortex: Cortex<Tagged, Semaphore> = Cortex::new(key, first, None).unwrap();
    let child = fork(|| {
        let Ok(c) = Cortex::<Tagged, Semaphore>::attach(key) else {
            return 2;
        };
        match c.read() {
            Ok(t) if t.samples.as_slice() == [1, 2, 3] && t.name.as_str() == Some("pump-3") => {}
            _ => return 3,
        }
        let second = Tagged {
            samples: FixedVec::try_from(&[4u32, 5, 6, 7, 8][..]).unwrap(),
            name: FixedString::try_from("valve-12").unwrap(),
        };
        if c.write(second).is_err() {
            return 4;
        }
        0
    });
    child.expect_success("read the record, write another");
    let second = cortex.read().unwrap();
    assert_eq!(second.samples.as_slice(), [4, 5, 6, 7, 8]);
    assert_eq!(second.name, "valve-12");

    // A peer outside the trust model stores lengths beyond both capacities.
    let raw = RawMapping::attach(cortex.segment_id());
    let at = raw
        .find(&common::mapping::bytes_of(&second))
        .expect("the record's bytes are in the segment");
    raw.write(at, &u64::MAX.to_le_bytes()); // FixedVec's length
    raw.write(at + 40, &1000u32.to_le_bytes()); // FixedString's length
    drop(raw);
    let child = fork(|| {
        let Ok(c) = Cortex::<Tagged, Semaphore>::attach(key) else {
            return 2;
        };
        let Ok(forged) = c.read() else { return 3 };
        // Clamped to the capacity, never past it.
        if forged.samples.len() != 8 || forged.samples.as_slice()[..5] != [4, 5, 6, 7, 8] {
            return 4;
        }
        if forged.name.as_str().is_some()
            || forged.name.len() != 32
            || forged.name.as_bytes().len() != 32
            || !forged.name.to_string().starts_with("valve-12")
        {
            return 5;
        }
        // A full list refuses one more; editing in place stays in bounds.
        let pushed = c.update(|t| {
            t.samples[7] = 70;
            t.samples.push(9).is_err()
        });
        if pushed.ok() != Some(true) {
            return 6;
        }
        0
    });
    child.expect_success("read a record with forged lengths");
    assert_eq!(cortex.read().unwrap().samples[7], 70);
    finish(cortex);
}

/// Two writers keep a 1024-element slice all-equal with `write_from`, three readers copy it
/// with `read_into`: no reader ever sees two values at once.
fn a_slice_is_never_torn<L: CortexSync>(name: &str) {
    const LEN: usize = 1024;
    let key = unique_key(name);
    let cortex: Cortex<[u64], L> = Cortex::new_slice_zeroed(key, LEN, None).unwrap();
    let start = Pipe::new();
    let race = Duration::from_millis(400);
    let writers: Vec<_> = (1..=2u64)
        .map(|id| {
            let start = &start;
            fork(move || {
                let Ok(c) = Cortex::<[u64], L>::attach(key) else {
                    return 2;
                };
                start.recv();
                let end = Instant::now() + race;
                let mut n = 0;
                while Instant::now() < end {
                    n += 1;
                    if c.write_from(&vec![id << 32 | n; LEN]).is_err() {
                        return 3;
                    }
                }
                0
            })
        })
        .collect();
    let reports: Vec<Pipe> = (0..3).map(|_| Pipe::new()).collect();
    let readers: Vec<_> = reports
        .iter()
        .map(|report| {
            fork(|| {
                let Ok(c) = Cortex::<[u64], L>::attach(key) else {
                    return 2;
                };
                start.recv();
                let end = Instant::now() + race;
                let mut copy = vec![0u64; LEN];
                let mut reads = 0u64;
                while Instant::now() < end {
                    if c.read_into(&mut copy).is_err() {
                        return 3;
                    }
                    if copy.iter().any(|&w| w != copy[0]) {
                        return 4;
                    }
                    reads += 1;
                }
                report.send_u64(reads);
                0
            })
        })
        .collect();
    start.release(5);
    for child in writers {
        child.expect_success("a writer");
    }
    for child in readers {
        let pid = child.pid();
        assert_eq!(
            child.wait(),
            common::Exit::Code(0),
            "reader {pid} (4: torn)"
        );
    }
    for report in &reports {
        assert!(report.recv_u64() > 0, "a reader made progress");
    }
    let last = cortex.to_vec().unwrap();
    assert!(last[0] != 0 && last.iter().all(|&w| w == last[0]));
    finish(cortex);
}

#[test]
fn a_slice_is_never_torn_semaphore() {
    let _guard = common::watchdog();
    a_slice_is_never_torn::<Semaphore>("slice_torn_semaphore");
}

#[test]
fn a_slice_is_never_torn_sysv_semaphore() {
    let _guard = common::watchdog();
    a_slice_is_never_torn::<SysvSemaphore>("slice_torn_sysv_semaphore");
}

#[test]
fn a_slice_is_never_torn_rw_semaphore() {
    let _guard = common::watchdog();
    a_slice_is_never_torn::<RwSemaphore>("slice_torn_rw_semaphore");
}

#[test]
fn a_slice_is_never_torn_seqlock() {
    let _guard = common::watchdog();
    a_slice_is_never_torn::<SeqLock>("slice_torn_seqlock");
}
