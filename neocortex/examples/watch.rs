//! One process writes a value, another prints each change as it arrives: no polling.
//!
//! ```text
//! cargo run -p neocortex --example watch           # 10 changes, 100 ms apart
//! cargo run -p neocortex --example watch -- 50 20  # 50 changes, 20 ms apart
//! ```
//!
//! The parent creates a `SeqLock` segment on a random key holding a small reading, starts a
//! watcher process (this same binary, with `watcher KEY N` arguments) and writes N readings.
//! The watcher attaches, then loops on `Watcher::next_value`, which sleeps in the kernel
//! until the value's version moves and then reads the value; it prints every reading it
//! gets, and stops at the last one. Changes that come faster than the watcher prints are
//! seen once, as the latest value.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use neocortex::{Cortex, CortexBuilder, SeqLock};

neocortex::shm_safe! {
    /// A sensor reading: what the writer publishes.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Reading {
        /// Counts readings; the last one is `total`.
        pub sequence: u64,
        /// How many readings the writer will publish.
        pub total: u64,
        /// The measured value.
        pub celsius: f64,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("watcher") => watcher(&args[1..]),
        _ => writer(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watch example failed: {e}");
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

fn writer(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let total = number(args, 0, 10)?;
    let every = Duration::from_millis(number(args, 1, 100)?);
    let cell: Cortex<Reading, SeqLock> = CortexBuilder::new(Reading {
        total,
        ..Reading::default()
    })
    .random_key()
    .with_default_lock()?;
    println!(
        "writer {}: a Reading on key {:#010x}, under a SeqLock",
        std::process::id(),
        cell.key()
    );
    let mut watcher = Command::new(std::env::current_exe()?)
        .args(["watcher", &cell.key().to_string()])
        .spawn()?;
    // Give the watcher a moment to attach; it would see the first change anyway, since it
    // starts from the version it finds.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    for sequence in 1..=total {
        let celsius = 20.0 + (sequence as f64 / 4.0).sin();
        cell.write(Reading {
            sequence,
            total,
            celsius,
        })?;
        println!(
            "writer: wrote reading {sequence} ({celsius:.3} °C), version {}",
            cell.version()
        );
        std::thread::sleep(every);
    }
    let status = watcher.wait()?;
    println!(
        "writer: done in {:.1?}; dropping the segment removes it",
        started.elapsed()
    );
    if !status.success() {
        return Err("the watcher failed".into());
    }
    Ok(())
}

fn watcher(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let key: i32 = args.first().ok_or("watcher needs a key")?.parse()?;
    let cell: Cortex<Reading, SeqLock> = Cortex::attach(key)?;
    let me = std::process::id();
    println!("watcher {me}: attached; waiting for changes");
    let mut watch = cell.watch();
    loop {
        let reading = watch.next_value(Duration::from_secs(10))?;
        println!(
            "watcher {me}: version {} -> reading {}/{}: {:.3} °C",
            watch.seen(),
            reading.sequence,
            reading.total,
            reading.celsius
        );
        if reading.sequence == reading.total {
            return Ok(());
        }
    }
}
