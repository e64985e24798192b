//! The comparison harness: every case for every subject in one process run, interleaved.
//!
//! ```text
//! cargo run --release -p neocortex-benches --bin compare -- [--quick] [--json]
//!     [--case NAME]... [--subject NAME]...
//! ```
//!
//! Each repetition runs every subject once, round-robin (starting one further each time),
//! so drift hits all alike. Timed cases measure batches calibrated to a fixed duration and
//! take the median of the samples per repetition (`notify_roundtrip` times round trips to a
//! child forked at setup); contended cases fork a writer and a reader pinned to two cores
//! and count their operations for a fixed time (`seqlock_1w1r` also forks the writer alone
//! first); sampled cases (`takeover_after_kill`) take a few separate samples per
//! repetition. The report gives the median of the repetition medians, their min–max, and the
//! ratio to the seed crate (or to the best floor where the seed has no such operation),
//! then every performance target of the project with its measured ratio and whether it holds, the
//! machine and the date. No time is asserted: the exit status says only whether the run
//! worked.
//!
//! Everything the run makes is removed at the end, also after a failure or Ctrl-C.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use neocortex_benches::affinity::{pin_to, CorePair};
use neocortex_benches::cleanup::{catch_interrupts, interrupted, sweep};
use neocortex_benches::contended::{run_processes, run_threads, run_writer_alone, Rate};
use neocortex_benches::machine::Machine;
use neocortex_benches::measure::{
    calibrate, median, samples_per_rep, time_batch, Batch, Plan, Summary,
};
use neocortex_benches::report::{json_lines, markdown, CaseResult, Measured, Outcome, RunInfo};
use neocortex_benches::subjects::{Case, Sample, Setup, Subject};

const USAGE: &str = "\
usage: compare [--quick] [--json] [--case NAME]... [--subject NAME]...
  --quick          short run (about a minute on 2 cores)
  --json           one JSON object per line instead of the markdown report
  --case NAME      only this case (repeatable)
  --subject NAME   only this subject (repeatable)";

struct Options {
    quick: bool,
    json: bool,
    cases: Vec<Case>,
    subjects: Vec<Subject>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        json: false,
        cases: Vec::new(),
        subjects: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--case" => {
                let name = args.next().ok_or("--case needs a name")?;
                o.cases
                    .push(Case::from_name(&name).ok_or(format!("unknown case {name}"))?);
            }
            "--subject" => {
                let name = args.next().ok_or("--subject needs a name")?;
                o.subjects
                    .push(Subject::from_name(&name).ok_or(format!("unknown subject {name}"))?);
            }
            "--bench" => {} // passed by `cargo bench`; nothing to do
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.cases.is_empty() {
        o.cases = Case::ALL.to_vec();
    }
    if o.subjects.is_empty() {
        o.subjects = Subject::ALL.to_vec();
    }
    Ok(o)
}

/// A subject's state within one case.
enum Entry {
    Timed {
        run: Batch<'static>,
        batch: u64,
        samples: usize,
        medians: Vec<f64>,
        /// The same-segment floor, timed right after each sample of `run`, and its medians.
        floor: Option<(Batch<'static>, Vec<f64>)>,
    },
    Contended {
        setup: Setup,
        rates: Vec<Rate>,
        /// The writer's ops/s alone, per repetition (`Setup::SoloAndPair`).
        solo: Vec<f64>,
    },
    Sampled {
        run: Sample,
        medians: Vec<f64>,
    },
    Done(Outcome),
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

/// Runs `f`, turning a panic into an error message.
fn guarded<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_message(&*p)))
}

fn contended_run(
    setup: &Setup,
    cores: CorePair,
    plan_time: std::time::Duration,
) -> Result<Rate, String> {
    match setup {
        Setup::Processes(pair) | Setup::SoloAndPair(pair) => {
            run_processes(pair.as_ref(), cores, plan_time)
        }
        Setup::Threads(pair) => run_threads(pair.as_ref(), cores, plan_time),
        Setup::Timed(_) | Setup::TimedWithFloor(..) | Setup::Sampled(_) | Setup::Unsupported(_) => {
            Err("not a contended setup".into())
        }
    }
}

/// The writer alone, for a setup that measures it (else `None`).
fn solo_run(
    setup: &Setup,
    cores: CorePair,
    plan_time: std::time::Duration,
) -> Option<Result<f64, String>> {
    match setup {
        Setup::SoloAndPair(pair) => Some(run_writer_alone(pair.as_ref(), cores, plan_time)),
        _ => None,
    }
}

fn prepare(subject: Subject, case: Case, plan: &Plan, cores: CorePair) -> Entry {
    let setup = match guarded(|| subject.setup(case, cores)) {
        Ok(s) => s,
        Err(e) => return Entry::Done(Outcome::Failed(format!("setup: {e}"))),
    };
    match setup {
        Setup::Unsupported(why) => Entry::Done(Outcome::Unsupported(why.into())),
        Setup::Timed(run) => timed_entry(run, None, plan),
        Setup::TimedWithFloor(run, floor) => timed_entry(run, Some(floor), plan),
        Setup::Sampled(mut run) => match guarded(&mut run) {
            Ok(_) => Entry::Sampled {
                run,
                medians: Vec::new(),
            },
            Err(e) => Entry::Done(Outcome::Failed(format!("warm-up: {e}"))),
        },
        setup @ (Setup::Processes(_) | Setup::SoloAndPair(_) | Setup::Threads(_)) => {
            match guarded(|| contended_run(&setup, cores, plan.contended_warmup)) {
                Ok(_) => Entry::Contended {
                    setup,
                    rates: Vec::new(),
                    solo: Vec::new(),
                },
                Err(e) => Entry::Done(Outcome::Failed(format!("warm-up: {e}"))),
            }
        }
    }
}

fn timed_entry(mut run: Batch<'static>, mut floor: Option<Batch<'static>>, plan: &Plan) -> Entry {
    let calibrated = guarded(|| {
        let (batch, per_op) = calibrate(&mut run, plan);
        // One more untimed batch at the final size: warm caches and pages.
        time_batch(&mut run, batch);
        if let Some(f) = floor.as_mut() {
            time_batch(f, batch);
        }
        Ok((batch, per_op))
    });
    match calibrated {
        Ok((batch, per_op)) => Entry::Timed {
            samples: samples_per_rep(plan, batch, per_op),
            run,
            batch,
            medians: Vec::new(),
            floor: floor.map(|f| (f, Vec::new())),
        },
        Err(e) => Entry::Done(Outcome::Failed(format!("warm-up: {e}"))),
    }
}

/// Runs one repetition of one subject; a failure ends the subject (dropping what it made).
fn run_rep(entry: &mut Entry, plan: &Plan, cores: CorePair) {
    let failure = match entry {
        Entry::Timed {
            run,
            batch,
            samples,
            medians,
            floor,
        } => guarded(|| {
            let mut times = Vec::with_capacity(*samples);
            let mut floor_times = Vec::with_capacity(*samples);
            for _ in 0..*samples {
                times.push(time_batch(run, *batch));
                if let Some((f, _)) = floor.as_mut() {
                    floor_times.push(time_batch(f, *batch));
                }
            }
            medians.push(median(&times));
            if let Some((_, floor_medians)) = floor.as_mut() {
                floor_medians.push(median(&floor_times));
            }
            Ok(())
        })
        .err(),
        Entry::Contended { setup, rates, solo } => guarded(|| {
            if let Some(alone) = solo_run(setup, cores, plan.contended_time) {
                solo.push(alone?);
            }
            rates.push(contended_run(setup, cores, plan.contended_time)?);
            Ok(())
        })
        .err(),
        Entry::Sampled { run, medians } => guarded(|| {
            let mut values = Vec::with_capacity(plan.sampled);
            for _ in 0..plan.sampled {
                if interrupted() {
                    break;
                }
                values.push(run()?);
            }
            medians.push(median(&values));
            Ok(())
        })
        .err(),
        Entry::Done(_) => None,
    };
    if let Some(e) = failure {
        *entry = Entry::Done(Outcome::Failed(e));
    }
}

fn finish(entry: Entry) -> Outcome {
    let mut extras = Vec::new();
    let (values, note, floor) = match entry {
        Entry::Done(o) => return o,
        Entry::Timed { medians, floor, .. } => (medians, String::new(), floor.map(|f| f.1)),
        Entry::Sampled { medians, .. } => (medians, String::new(), None),
        Entry::Contended { rates, solo, .. } if !solo.is_empty() => {
            // seqlock_1w1r: the reader's rate is the figure; the writer's two rates go along.
            let writer: Vec<f64> = rates.iter().map(|r| r.writer_per_s).collect();
            extras.extend(Summary::of(&writer).map(|s| ("writer", s)));
            extras.extend(Summary::of(&solo).map(|s| ("writer_solo", s)));
            (
                rates.iter().map(|r| r.reader_per_s).collect(),
                String::new(),
                None,
            )
        }
        Entry::Contended { rates, .. } => {
            let shares: Vec<f64> = rates.iter().map(|r| r.writer_share).collect();
            let note = format!("writer share {:.0}%", 100.0 * median(&shares));
            (rates.iter().map(|r| r.ops_per_s).collect(), note, None)
        }
    };
    match Summary::of(&values) {
        Some(s) => Outcome::Measured(Measured {
            summary: s,
            note,
            same_segment_floor: floor.as_deref().and_then(Summary::of),
            extras,
        }),
        None if interrupted() => Outcome::Failed("interrupted".into()),
        None => Outcome::Failed("no repetition finished".into()),
    }
}

fn run_case(case: Case, subjects: &[Subject], plan: &Plan, cores: CorePair) -> CaseResult {
    let started = Instant::now();
    let mut entries: Vec<(Subject, Entry)> = Vec::new();
    for &s in subjects {
        if interrupted() {
            break;
        }
        entries.push((s, prepare(s, case, plan, cores)));
    }
    for rep in 0..plan.reps {
        let k = entries.len();
        for i in 0..k {
            if interrupted() {
                break;
            }
            let (_, entry) = &mut entries[(i + rep) % k];
            run_rep(entry, plan, cores);
        }
    }
    let rows = entries.into_iter().map(|(s, e)| (s, finish(e))).collect();
    eprintln!(
        "compare: {} done in {:.1} s",
        case.name(),
        started.elapsed().as_secs_f64()
    );
    CaseResult { case, rows }
}

fn report_leftovers(when: &str) -> bool {
    let removed = sweep();
    for r in &removed {
        eprintln!("compare: {when}: removed leftover {r}");
    }
    removed.is_empty()
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("compare: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    // Before pinning: nproc counts the cores this process may use.
    let machine = Machine::describe();
    if let Err(e) = catch_interrupts() {
        eprintln!("compare: cannot catch interrupts ({e}); Ctrl-C may leave segments behind");
    }
    let cores = match CorePair::detect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("compare: cannot read the affinity mask: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = pin_to(cores.first) {
        eprintln!("compare: cannot pin to core {}: {e}", cores.first);
    }
    if cores.first == cores.second {
        eprintln!("compare: only one core allowed: contended cases share it");
    }
    let plan = if options.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let started = Instant::now();
    let mut results = Vec::new();
    for &case in &options.cases {
        if interrupted() {
            break;
        }
        eprintln!("compare: {} ...", case.name());
        results.push(run_case(case, &options.subjects, &plan, cores));
        report_leftovers(case.name());
    }
    let clean = report_leftovers("exit");
    let info = RunInfo {
        mode: if options.quick { "quick" } else { "full" },
        reps: plan.reps,
        cores: (cores.first, cores.second),
        wall_secs: started.elapsed().as_secs_f64(),
    };
    if options.json {
        print!("{}", json_lines(&results));
    } else {
        print!("{}", markdown(&results, &machine, &info));
    }
    if interrupted() {
        eprintln!("compare: interrupted; everything made so far was removed");
        return ExitCode::from(130);
    }
    if !clean {
        eprintln!("compare: some objects outlived their owners and were removed by the sweep");
    }
    ExitCode::SUCCESS
}
