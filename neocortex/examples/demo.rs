//! Two or more processes sharing a counter, with the default lock.
//!
//! ```text
//! cargo run -p neocortex --example demo            # 2 worker processes
//! cargo run -p neocortex --example demo -- 4 5000  # 4 workers, 5000 increments each
//! ```
//!
//! The parent creates the segment on a random key, starts worker processes (this same
//! binary, with `worker KEY N` arguments) that attach by key and increment the counter under
//! the lock, checks the total and removes the segment when it drops its handle.

use std::process::{Command, ExitCode};
use std::time::Instant;

use neocortex::{Cortex, CortexBuilder, Semaphore};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("worker") => worker(&args[1..]),
        _ => parent(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number(args: &[String], i: usize, default: u64) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(match args.get(i) {
        Some(s) => s.parse()?,
        None => default,
    })
}

fn parent(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let workers = number(args, 0, 2)?;
    let per_worker = number(args, 1, 10_000)?;
    let counter: Cortex<u64, Semaphore> =
        CortexBuilder::new(0u64).random_key().with_default_lock()?;
    println!(
        "parent {}: created a u64 counter on key {:#010x} (segment id {}, mode 0600)",
        std::process::id(),
        counter.key(),
        counter.segment_id()
    );
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..workers {
        let child = Command::new(&exe)
            .args([
                "worker",
                &counter.key().to_string(),
                &per_worker.to_string(),
            ])
            .spawn()?;
        children.push(child);
    }
    let mut failed = 0;
    for mut child in children {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    let total = counter.read()?;
    let expected = workers * per_worker;
    println!(
        "parent: {workers} workers x {per_worker} increments = {total} (expected {expected}) in {:.1?}",
        started.elapsed()
    );
    if failed > 0 || total != expected {
        return Err(format!("{failed} worker(s) failed, total {total} != {expected}").into());
    }
    println!("parent: total checked; dropping the counter removes the segment and its lock");
    Ok(())
}

fn worker(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let key: i32 = args.first().ok_or("worker needs a key")?.parse()?;
    let n = number(args, 1, 10_000)?;
    let me = std::process::id();
    let counter: Cortex<u64, Semaphore> = Cortex::attach(key)?;
    println!("worker {me}: attached to key {key:#010x}");
    for i in 1..=n {
        let mut guard = counter.lock()?;
        if guard.owner_died() {
            println!("worker {me}: a previous holder died; the counter is kept as it is");
            guard.mark_consistent();
        }
        *guard += 1;
        drop(guard);
        if i % (n / 4).max(1) == 0 {
            println!(
                "worker {me}: {i}/{n} increments, counter now {}",
                counter.read()?
            );
        }
    }
    Ok(())
}
