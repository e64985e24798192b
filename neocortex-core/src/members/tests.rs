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
