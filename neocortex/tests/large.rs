//! Large values without blowing the stack: on a thread with a 2 MiB stack (the default for
//! spawned threads), in a debug build, `Cortex::new`, `write` and `read` of a 512 KiB value
//! work for `Semaphore` and `SeqLock`, and so does `CortexBuilder::new(value)`.
//!
//! The caller's own code holds the value (and, for `read`, the result) on its stack: that is
//! one or two copies, 1 MiB at most. The library's calls must fit in the rest; a call that
//! makes several more copies of the value in its frames overflows. Each call runs in a
//! child process (a stack overflow aborts the process it happens in), in a private IPC
//! namespace (a child that dies half-way leaves nothing behind). When a call overflows,
//! the test finds and reports how much stack it needed.

mod common;

use common::{fork, Exit};
use neocortex::{Cortex, CortexBuilder, CortexSync, Semaphore, SeqLock};

/// 512 KiB.
type Big = [u64; 65536];

/// The stack of the thread each call runs on.
const STACK: usize = 2 << 20;

/// Runs `op` on a thread with a `stack`-byte stack in a forked child; how the child ended.
fn on_a_thread_with(stack: usize, op: fn() -> i32) -> Exit {
    let child = fork(move || {
        let thread = std::thread::Builder::new()
            .name("small stack".into())
            .stack_size(stack)
            .spawn(op);
        match thread.map(|t| t.join()) {
            Ok(Ok(code)) => code,
            _ => 100,
        }
    });
    child.wait()
}

/// The least stack (to 64 KiB, up to 32 MiB) on which `op` succeeds.
fn stack_needed(op: fn() -> i32) -> Option<usize> {
    let step = 64 << 10;
    let (mut low, mut high) = (STACK, 32 << 20);
    if on_a_thread_with(high, op) != Exit::Code(0) {
        return None;
    }
    while high - low > step {
        let mid = (low + high) / 2 / step * step;
        if on_a_thread_with(mid, op) == Exit::Code(0) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high)
}

/// Runs `op` on a 2 MiB stack, in a private IPC namespace; fails the test, saying how much
/// stack it needed, if it overflows.
fn fits_in_two_mib(what: &str, op: fn() -> i32) {
    let what = what.to_owned();
    common::in_private_ipc_namespace(move || {
        let outcome = on_a_thread_with(STACK, op);
        if outcome == Exit::Code(0) {
            let (segments, sets) = common::namespace_objects();
            assert!(
                segments.is_empty() && sets.is_empty(),
                "{what} left objects"
            );
            return;
        }
        let needed = stack_needed(op).map_or("more than 32 MiB".into(), |n| {
            format!(
                "{} KiB, {:.1} times the value",
                n >> 10,
                n as f64 / (512 << 10) as f64
            )
        });
        panic!("{what} with a 512 KiB value on a 2 MiB stack: {outcome:?}; it needs {needed}");
    });
}

fn new_then_remove<L: CortexSync>() -> i32 {
    let value: Big = [7; 65536];
    let Ok(key) = neocortex::random_key() else {
        return 2;
    };
    let Ok(cortex) = Cortex::<Big, L>::new(key, value, None) else {
        return 3;
    };
    match cortex.remove() {
        Ok(()) => 0,
        Err(_) => 4,
    }
}

fn write_then_remove<L: CortexSync>() -> i32 {
    let Ok(key) = neocortex::random_key() else {
        return 2;
    };
    let Ok(cortex) = Cortex::<Big, L>::new_zeroed(key, None) else {
        return 3;
    };
    let value: Big = [9; 65536];
    if cortex.write(value).is_err() {
        return 4;
    }
    match cortex.remove() {
        Ok(()) => 0,
        Err(_) => 5,
    }
}

fn read_then_remove<L: CortexSync>() -> i32 {
    let Ok(key) = neocortex::random_key() else {
        return 2;
    };
    let Ok(cortex) = Cortex::<Big, L>::new_with(key, None, |v| v[65535] = 5) else {
        return 3;
    };
    let Ok(value) = cortex.read() else { return 4 };
    if value[65535] != 5 || value[0] != 0 {
        return 5;
    }
    match cortex.remove() {
        Ok(()) => 0,
        Err(_) => 6,
    }
}

fn build_then_remove<L: CortexSync>() -> i32 {
    let value: Big = [3; 65536];
    let Ok(cortex) = CortexBuilder::new(value)
        .random_key()
        .with_default_lock::<L>()
    else {
        return 2;
    };
    match cortex.remove() {
        Ok(()) => 0,
        Err(_) => 3,
    }
}

#[test]
fn semaphore_new_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib("Cortex::<_, Semaphore>::new", new_then_remove::<Semaphore>);
}

#[test]
fn semaphore_write_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib(
        "Cortex::<_, Semaphore>::write",
        write_then_remove::<Semaphore>,
    );
}

#[test]
fn semaphore_read_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib(
        "Cortex::<_, Semaphore>::read",
        read_then_remove::<Semaphore>,
    );
}

#[test]
fn seqlock_new_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib("Cortex::<_, SeqLock>::new", new_then_remove::<SeqLock>);
}

#[test]
fn seqlock_write_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib("Cortex::<_, SeqLock>::write", write_then_remove::<SeqLock>);
}

#[test]
fn seqlock_read_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib("Cortex::<_, SeqLock>::read", read_then_remove::<SeqLock>);
}

#[test]
fn builder_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib(
        "CortexBuilder::new(..).random_key().with_default_lock::<Semaphore>()",
        build_then_remove::<Semaphore>,
    );
}

#[test]
fn seqlock_builder_of_a_512_kib_value_fits_in_a_2_mib_stack() {
    let _guard = common::watchdog();
    fits_in_two_mib(
        "CortexBuilder::new(..).random_key().with_default_lock::<SeqLock>()",
        build_then_remove::<SeqLock>,
    );
}
