//! Unit tests of [`super`]: pure logic, run under Miri too (except where marked).

use super::*;

#[test]
fn tokens_pack_slot_and_tag_and_reject_flags() {
    let t = Token::new(MAX_SLOTS, 32767);
    assert_eq!((t.slot(), t.tag()), (MAX_SLOTS, 32767));
    assert_eq!(Token::from_raw(t.raw()), Some(t));
    assert!(t.raw() < 1 << Token::BITS);
    assert_eq!(Token::from_raw(0), None);
    assert_eq!(Token::from_raw(5), None, "a slot without a tag is no token");
    assert_eq!(Token::from_raw(t.raw() | 1 << 31), None);
    assert_eq!(format!("{t:?}"), "Token(slot 4094, tag 32767)");
}

#[test]
fn the_table_notes_pids_by_slot() {
    let table = MemberTable::default();
    assert_eq!(table.noted().count(), 0);
    let a = Token::new(3, 7);
    let b = Token::new(5, 9);
    table.note(a, 100);
    table.note(b, 200);
    assert_eq!(table.noted().collect::<Vec<_>>(), [(100, a), (200, b)]);
    assert_eq!(table.pid_of(a), Some(100));
    // A later claim of the slot replaces the note.
    let c = Token::new(3, 8);
    table.note(c, 300);
    assert_eq!(table.pid_of(a), None);
    assert_eq!(table.noted().collect::<Vec<_>>(), [(300, c), (200, b)]);
    // Slots past the table are not noted.
    table.note(Token::new(NOTED_SLOTS as u16, 1), 400);
    assert_eq!(table.noted().count(), 2);
}

/// Removes a members set when dropped.
struct Set(i32);

impl Drop for Set {
    fn drop(&mut self) {
        let _ = remove_set(self.0);
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn threads_racing_for_a_first_token_share_one() {
    for _ in 0..20 {
        let set = Set(create_set(Permission::OwnerOnly, DEFAULT_SLOTS).expect("members set"));
        let membership = Membership::new(set.0, DEFAULT_SLOTS);
        let header = Box::<Header>::default();
        let table = Box::<MemberTable>::default();
        let start = std::sync::Barrier::new(8);
        let tokens: Vec<Token> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        membership.token(1, &header, &table).expect("token")
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("thread"))
                .collect()
        });
        assert!(tokens.iter().all(|&t| t == tokens[0]), "{tokens:?}");
        // The losers gave their claims back: one slot is held.
        let mut values = vec![0u16; usize::from(FIRST_SLOT + DEFAULT_SLOTS)];
        sem::get_all(set.0, &mut values).expect("getall");
        let held: Vec<_> = (0..DEFAULT_SLOTS)
            .filter(|&s| values[usize::from(FIRST_SLOT + s)] != 0)
            .collect();
        assert_eq!(held, [tokens[0].slot()]);
        assert!(is_alive(set.0, tokens[0]).expect("alive"));
        membership.leave(1, false);
        assert!(!is_alive(set.0, tokens[0]).expect("released"));
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn the_reaper_is_held_by_one_at_a_time_and_given_back() {
    let set = Set(create_set(Permission::OwnerOnly, 1).expect("members set"));
    assert_eq!(take_reaper(set.0, Wait::Forever), Ok(true));
    assert_eq!(
        take_reaper(set.0, Wait::Never),
        Ok(false),
        "held: a try gives up"
    );
    release_reaper(set.0).expect("give it back");
    assert_eq!(take_reaper(set.0, Wait::Never), Ok(true), "free again");
    release_reaper(set.0).expect("give it back");
    remove_set(set.0).expect("remove the set");
    // A removed set: an error at once, from both (no retry loop).
    assert!(take_reaper(set.0, Wait::Never).is_err());
    assert!(release_reaper(set.0).is_err());
}

#[test]
fn a_members_set_that_is_gone_means_the_segment_was_removed() {
    let error = |errno| {
        members_error(
            "lock",
            7,
            SysError {
                call: "semop",
                errno,
            },
        )
    };
    assert_eq!(error(Errno::EIDRM).kind(), ErrorKind::LockRemoved);
    assert_eq!(error(Errno::EINVAL).kind(), ErrorKind::LockRemoved);
    let other = error(Errno::EACCES);
    assert_eq!(other.kind(), ErrorKind::PermissionDenied);
    assert_eq!(other.key(), 7);
}

/// The inspection's context (the segment mapped read-only) refuses what would write: a
/// token claim notes this process in the member table, a takeover writes the lock.
#[test]
#[cfg_attr(miri, ignore)]
fn a_read_only_context_refuses_to_write() {
    let set = Set(create_set(Permission::OwnerOnly, 2).expect("members set"));
    let membership = Membership::new(set.0, 2);
    let header = Box::<Header>::default();
    let table = Box::<MemberTable>::default();
    let cx = crate::sync::LockContext::read_only(1, &membership, &header, &table);
    assert_eq!(cx.token().unwrap_err().kind(), ErrorKind::InvalidInput);
    let taken = cx.with_reaper(Wait::Never, || ());
    assert_eq!(taken.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(table.noted().count(), 0, "nothing noted");
    let writable = crate::sync::LockContext::new(1, &membership, &header, &table);
    assert!(writable.token().is_ok());
    assert_eq!(table.noted().count(), 1);
}
