//! An unhandled dirty error in `Drop` is logged exactly once with `tracing::error!`.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{assert_gone, fork, unique_key, Pipe};
use neocortex::{Cortex, Semaphore};
use neocortex_sys::{sem, shm};

/// A subscriber that counts events by level and keeps the error messages.
#[derive(Default)]
struct Counting {
    errors: AtomicUsize,
    warnings: AtomicUsize,
    messages: Mutex<Vec<String>>,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for &'static Counting {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let level = *event.metadata().level();
        if level == tracing::Level::ERROR {
            self.errors.fetch_add(1, Ordering::SeqCst);
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.messages.lock().unwrap().push(fields.0);
        } else if level == tracing::Level::WARN {
            self.warnings.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_dirty_drop_is_logged_once_naming_what_is_left() {
    if !common::is_root() {
        eprintln!("skipped: losing ownership by dropping to uid 65534 needs root");
        return;
    }
    let key = unique_key("a_dirty_drop_is_logged_once");
    let ids = Pipe::new();
    let child = fork(|| {
        let counting: &'static Counting = Box::leak(Box::default());
        let _default = tracing::subscriber::set_default(counting);
        let Ok(cortex) = Cortex::<u64, Semaphore>::new(key, 1, None) else {
            return 2;
        };
        ids.send_i32(cortex.members_set_id());
        // Lose the right to remove what this process created.
        if !common::become_nobody() {
            return 3;
        }
        drop(cortex);
        let messages = counting.messages.lock().unwrap().join("\n");
        let errors = counting.errors.load(Ordering::SeqCst);
        if errors != 1 {
            eprintln!("expected one error event, got {errors}: {messages}");
            return 4;
        }
        if !(messages.contains("ipcrm -m") && messages.contains("ipcrm -s")) {
            eprintln!("the error does not name both objects: {messages}");
            return 5;
        }
        0
    });
    let semid = ids.recv_i32();
    child.expect_success("drop a Cortex it may no longer remove");
    // Clean up what the child could not, as root, and check it is all gone.
    let shmid = shm::shmget(key, 0, 0).expect("the segment is left, as the log said");
    // SAFETY: the segment and the set are this test's own, and nobody is attached any more.
    unsafe { shm::remove(shmid) }.unwrap();
    // SAFETY: as above.
    unsafe { sem::remove(semid) }.expect("the semaphore set is left, as the log said");
    assert_gone(key, &[shmid], &[semid]);
}
