//! Unit tests of [`super`]: pure logic, run under Miri too (except where marked).

use super::*;

fn descriptor(elem_size: u64, tag: u64) -> Descriptor {
    let layout = SegmentLayout::new((4, 4), (elem_size as usize, 8), 1).unwrap();
    Descriptor {
        layout,
        shape: Shape::Value,
        elem_size,
        elem_align: 8,
        elem_tag: tag,
        len: 1,
        lock_tag: 9,
        type_name: Name::new("u64"),
        lock_name: Name::new("semaphore"),
    }
}

fn slice(len: u64) -> Descriptor {
    let layout = SegmentLayout::new((4, 4), (4, 4), len).unwrap();
    Descriptor {
        layout,
        shape: Shape::Slice,
        elem_size: 4,
        elem_align: 4,
        elem_tag: 3,
        len,
        lock_tag: 9,
        type_name: Name::new("[u32]"),
        lock_name: Name::new("semaphore"),
    }
}

fn zeroed_header() -> Box<Header> {
    Box::default()
}

#[test]
fn layout_gives_each_part_its_own_lines() {
    let l = SegmentLayout::new((4, 4), (8, 8), 1).unwrap();
    let header = std::mem::size_of::<Header>() as u64;
    assert!(l.members_offset >= header);
    assert!(l.lock_offset >= l.members_offset + crate::members::MemberTable::SIZE);
    assert_eq!(l.members_offset % 64, 0);
    assert_eq!(l.lock_offset % 64, 0);
    assert_eq!(l.data_offset % 64, 0);
    assert!(
        l.data_offset / 64 > (l.lock_offset + 4 - 1) / 64,
        "the value has a line of its own"
    );
    assert_eq!(l.total_size, l.data_offset + 8);
    let big = SegmentLayout::new((0, 1), (64, 4096), 1).unwrap();
    assert_eq!(big.data_offset % 4096, 0);
    let many = SegmentLayout::new((4, 4), (4, 4), 1000).unwrap();
    assert_eq!(many.total_size, many.data_offset + 4000);
    let empty = SegmentLayout::new((4, 4), (4, 4), 0).unwrap();
    assert_eq!(empty.total_size, empty.data_offset);
    assert!(SegmentLayout::new((0, 1), (usize::MAX, 1), 1).is_none());
    assert!(SegmentLayout::new((0, 1), (8, 8), u64::MAX / 4).is_none());
    assert_eq!(std::mem::size_of::<Header>() % 64, 0);
    assert_eq!(std::mem::align_of::<Header>(), 64);
}

#[test]
fn header_round_trip_and_state_machine() {
    let h = zeroed_header();
    assert_eq!(h.state(), Ok(InitState::Uninit));
    assert!(h.format().is_err());
    assert_eq!(h.members_id(), None);
    let d = descriptor(8, 1);
    let me = ProcessIdentity {
        pid: 42,
        start_ticks: 7,
    };
    h.begin(&d, me, 99);
    assert_eq!(h.state(), Ok(InitState::Initializing));
    assert_eq!(h.format(), Ok(()));
    assert_eq!(h.descriptor(), Some(d));
    let creator = h.creator();
    assert_eq!(
        (creator.identity, creator.pidns, creator.token),
        (me, 99, 0)
    );
    h.record_members(17);
    assert_eq!(h.members_id(), Some(17));
    h.set_creator_token(5);
    assert_eq!(h.creator().token, 5);
    h.publish();
    assert_eq!(h.state(), Ok(InitState::Ready));
    h.forget_members();
    assert_eq!(h.members_id(), None);
    assert_eq!((h.next_claim(), h.next_claim()), (0, 1));
    h.fixed.state.store(0xdead_beef, Ordering::Relaxed);
    assert_eq!(h.state(), Err(0xdead_beef));
    h.fixed.format.store(1, Ordering::Relaxed);
    assert!(h.format().unwrap_err().contains("format 1"));
    h.fixed.shape.store(7, Ordering::Relaxed);
    assert_eq!(h.descriptor(), None);
}

#[test]
fn read_checks_state_format_shape_and_consistency_in_that_order() {
    let h = zeroed_header();
    let d = descriptor(8, 1);
    let size = d.layout.total_size;
    assert_eq!(h.read(size), Ok(Published::Blank));
    assert_eq!(Published::Blank.descriptor(), None);
    h.begin(
        &d,
        ProcessIdentity {
            pid: 1,
            start_ticks: 2,
        },
        3,
    );
    assert_eq!(h.read(size), Ok(Published::Initializing(d)));
    // A segment smaller than the descriptor claims is damaged, whatever the state.
    let short = h.read(size - 1).unwrap_err();
    assert!(matches!(short, Unreadable::Damaged(_)), "{short:?}");
    assert!(short
        .to_string()
        .starts_with("its header is damaged or forged: "));
    h.publish();
    assert_eq!(h.read(size), Ok(Published::Ready(d)));
    assert_eq!(Published::Ready(d).descriptor(), Some(d));
    h.fixed.shape.store(9, Ordering::Relaxed);
    assert_eq!(h.read(size), Err(Unreadable::NoShape));
    assert_eq!(
        Unreadable::NoShape.to_string(),
        "its header names neither a value nor a slice"
    );
    h.fixed.format.store(1, Ordering::Relaxed);
    let old = h.read(size).unwrap_err();
    assert!(
        matches!(&old, Unreadable::NotOurs(why) if why.contains("format 1")),
        "{old:?}"
    );
    assert!(old
        .to_string()
        .starts_with("it is not a neocortex segment (header format 1"));
    h.fixed.state.store(0xdead_beef, Ordering::Relaxed);
    assert!(matches!(h.read(size), Err(Unreadable::NotOurs(_))));
    h.fixed.format.store(FORMAT_VERSION, Ordering::Relaxed);
    assert_eq!(
        h.read(size),
        Err(Unreadable::NotOurs("unknown state word".into()))
    );
    h.fixed.state.store(0, Ordering::Relaxed);
    h.fixed.magic.store(7, Ordering::Relaxed);
    assert_eq!(
        h.read(size),
        Ok(Published::Blank),
        "a blank state is read first"
    );
    assert_eq!(h.recorded_holder(), 0);
    h.take_holder(77);
    assert_eq!(h.recorded_holder(), 77);
}

#[test]
fn holder_word_reports_dead_holders_until_repaired() {
    let h = zeroed_header();
    assert_eq!(h.take_holder(10), 0);
    h.clear_holder();
    assert_eq!(h.dead_holder(), None);
    assert_eq!(h.take_holder(11), 0);
    // 11 dies holding the lock: the kernel releases it, the word still says 11.
    assert_eq!(h.take_holder(12), 11);
    assert_eq!(h.dead_holder(), Some(11));
    h.clear_holder();
    assert_eq!(h.take_holder(13), 0);
    assert_eq!(
        h.dead_holder(),
        Some(11),
        "still reported until marked consistent"
    );
    h.mark_consistent();
    assert_eq!(h.dead_holder(), None);
    h.mark_inconsistent(13);
    assert_eq!(h.dead_holder(), Some(13));
    h.mark_consistent();
    h.mark_inconsistent(0);
    assert_eq!(h.dead_holder(), Some(-1), "an unknown pid is still a death");
    h.mark_consistent();
    // A shared holder sees a holder word left by a dead writer.
    h.clear_holder();
    h.take_holder(14);
    assert_eq!(h.dead_holder_seen_shared(), Some(14));
    assert!(!h.is_removed());
    h.mark_removed();
    assert!(h.is_removed());
}

#[test]
fn descriptor_check_finds_each_difference() {
    let expected = descriptor(8, 1);
    let size = expected.layout.total_size;
    assert_eq!(expected.check(&expected, size), Ok(()));
    assert_eq!(descriptor(8, 2).check(&expected, size), Err(Mismatch::Type));
    let other_lock = Descriptor {
        lock_tag: 10,
        ..expected
    };
    assert_eq!(other_lock.check(&expected, size), Err(Mismatch::Lock));
    assert!(matches!(
        expected.check(&expected, size - 1),
        Err(Mismatch::Corrupt(_))
    ));
    let bigger = descriptor(16, 1);
    assert_eq!(
        bigger.check(&expected, bigger.layout.total_size),
        Err(Mismatch::Type)
    );
    let forged = Descriptor {
        elem_size: u64::MAX,
        ..expected
    };
    assert!(matches!(
        forged.check(&expected, u64::MAX),
        Err(Mismatch::Corrupt(_))
    ));
    let misaligned = Descriptor {
        elem_align: 3,
        ..expected
    };
    assert!(matches!(
        misaligned.check(&expected, size),
        Err(Mismatch::Corrupt(_))
    ));
    let value_of_two = Descriptor { len: 2, ..expected };
    assert!(matches!(
        value_of_two.check(&expected, u64::MAX),
        Err(Mismatch::Corrupt(_))
    ));
}

#[test]
fn slices_are_checked_by_element_and_shape_not_length() {
    let made = slice(100);
    // The attacher does not know the length: any expected length matches.
    let asked = slice(7);
    assert_eq!(made.check(&asked, made.layout.total_size), Ok(()));
    // A slice is not a value, nor a value a slice.
    let value = descriptor(4, 3);
    assert_eq!(
        made.check(&value, made.layout.total_size),
        Err(Mismatch::Type)
    );
    assert_eq!(
        value.check(&made, value.layout.total_size),
        Err(Mismatch::Type)
    );
    let wider = Descriptor {
        elem_size: 8,
        elem_align: 8,
        ..asked
    };
    assert_eq!(
        made.check(&wider, made.layout.total_size),
        Err(Mismatch::Type)
    );
    // A length that does not match the segment's size is a forgery.
    let longer = Descriptor { len: 101, ..made };
    assert!(matches!(
        longer.check(&asked, made.layout.total_size),
        Err(Mismatch::Corrupt(_))
    ));
    assert!(made
        .describe()
        .contains("`[u32]` (100 element(s) of 4 bytes, align 4) with lock `semaphore`"));
}

#[test]
fn names_truncate_on_char_boundaries() {
    let long = "é".repeat(40);
    let name = Name::new(&long);
    assert_eq!(name.to_text(), "é".repeat(28));
    assert_eq!(Name::new("f64").to_text(), "f64");
    assert!(descriptor(8, 1)
        .describe()
        .contains("`u64` (8 bytes, align 8) with lock `semaphore`"));
}

#[test]
fn a_name_debugs_as_its_text() {
    assert_eq!(format!("{:?}", Name::new("u64")), "\"u64\"");
}

/// Each of `check_consistent`'s conditions refuses on its own: a descriptor that breaks
/// exactly one of them (and keeps the others) is refused.
#[test]
fn every_consistency_condition_refuses_on_its_own() {
    fn ok(d: &Descriptor) -> bool {
        d.check_consistent(d.layout.total_size).is_ok()
    }
    let base = descriptor(8, 1);
    assert!(ok(&base));
    let least = SegmentLayout::new((0, 1), (8, 1), 0).unwrap();
    assert_eq!(base.layout.lock_offset, least.lock_offset);
    let with = |change: &dyn Fn(&mut SegmentLayout)| {
        let mut d = base;
        change(&mut d.layout);
        d
    };
    // The member table elsewhere.
    assert!(!ok(&with(&|l| l.members_offset += 64)));
    // The lock state before where it can start.
    assert!(!ok(&with(&|l| l.lock_offset -= 8)));
    // The value before the lock state (both aligned, the sizes adding up).
    assert!(!ok(&with(&|l| l.lock_offset = l.data_offset + 64)));
    // The value misaligned (the sizes adding up).
    assert!(!ok(&with(&|l| {
        l.data_offset += 4;
        l.total_size += 4;
    })));
    // The sizes not adding up.
    assert!(!ok(&with(&|l| l.total_size += 8)));
    // More bytes than the segment has.
    assert!(base.check_consistent(base.layout.total_size - 1).is_err());

    // Alignment: up to a page, a power of two.
    let paged = |align: u64| Descriptor {
        layout: SegmentLayout::new((4, 4), (8, align as usize), 1).unwrap(),
        elem_align: align,
        ..base
    };
    assert!(ok(&paged(4096)));
    assert!(!ok(&paged(8192)));
    assert!(!ok(&Descriptor {
        elem_align: 12,
        ..base
    }));
}
