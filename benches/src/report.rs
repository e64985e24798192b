//! The markdown tables, the machine, and the JSON lines (the targets are in
//! [`crate::targets`]).

use std::fmt::Write as _;

use crate::machine::Machine;
use crate::measure::Summary;
use crate::subjects::{Case, Subject};

/// What one subject gave in one case.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Measured.
    Measured(Measured),
    /// The subject does not support the case.
    Unsupported(String),
    /// Setup or a run failed.
    Failed(String),
}

/// A measured subject in one case.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// ns per operation, or ops/s for throughput cases.
    pub summary: Summary,
    /// What else the table should say (may be empty).
    pub note: String,
    /// The same operation done with bare `libc` on the subject's own segment, interleaved
    /// with it sample by sample (`inplace_write_64m`: `memcpy` into the same value).
    pub same_segment_floor: Option<Summary>,
    /// Further figures of the same runs, by name (`seqlock_1w1r`: `writer`, the writer's
    /// ops/s beside the reader, and `writer_solo`, alone).
    pub extras: Vec<(&'static str, Summary)>,
}

impl Measured {
    /// A measurement without a same-segment floor.
    pub fn new(summary: Summary, note: String) -> Self {
        Self {
            summary,
            note,
            same_segment_floor: None,
            extras: Vec::new(),
        }
    }

    /// The named extra figure.
    pub fn extra(&self, name: &str) -> Option<Summary> {
        self.extras
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }
}

/// One case's results, one row per subject.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// The subjects' outcomes, in report order.
    pub rows: Vec<(Subject, Outcome)>,
}

impl CaseResult {
    /// The summary of `subject`, if it was measured.
    pub fn summary(&self, subject: Subject) -> Option<Summary> {
        self.measured(subject).map(|m| m.summary)
    }

    /// What `subject` measured, if it was.
    pub fn measured(&self, subject: Subject) -> Option<&Measured> {
        self.rows.iter().find_map(|(s, o)| match o {
            Outcome::Measured(m) if *s == subject => Some(m),
            _ => None,
        })
    }

    /// What ratios are taken against: the seed crate when it was measured, else the best
    /// measured floor.
    pub fn baseline(&self) -> Option<(Subject, Summary)> {
        if let Some(seed) = self.summary(Subject::Seed) {
            return Some((Subject::Seed, seed));
        }
        self.rows
            .iter()
            .filter_map(|(s, o)| match o {
                Outcome::Measured(m) if s.is_floor() => Some((*s, m.summary)),
                _ => None,
            })
            .reduce(|best, next| {
                let better = if self.case.is_throughput() {
                    next.1.median > best.1.median
                } else {
                    next.1.median < best.1.median
                };
                if better {
                    next
                } else {
                    best
                }
            })
    }
}

/// Formats a time in ns with a unit that keeps 3–4 significant digits.
pub fn fmt_time(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2} ns")
    } else if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Formats a throughput in operations per second.
pub fn fmt_rate(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.2} M/s", ops / 1e6)
    } else {
        format!("{:.1} k/s", ops / 1e3)
    }
}

/// Formats a case's value: a throughput or a time.
pub fn fmt_value(case: Case, v: f64) -> String {
    if case.is_throughput() {
        fmt_rate(v)
    } else {
        fmt_time(v)
    }
}

/// How the run was made, for the report's footer.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// "quick" or "full".
    pub mode: &'static str,
    /// Repetitions per case.
    pub reps: usize,
    /// The two cores used.
    pub cores: (usize, usize),
    /// The wall time of the whole run, in seconds.
    pub wall_secs: f64,
}

/// The markdown report: a table per case, the targets, the machine and date.
pub fn markdown(results: &[CaseResult], machine: &Machine, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# neocortex comparison ({} run)\n", info.mode);
    for r in results {
        let better = if r.case.is_throughput() {
            "higher is better"
        } else {
            "lower is better"
        };
        let base = r.baseline();
        let ratio_head = match base {
            Some((Subject::Seed, _)) => format!("× {}", Subject::Seed.name()),
            Some((s, _)) => format!("× {} (best floor; seed n/a)", s.name()),
            None => "ratio".to_string(),
        };
        let _ = writeln!(out, "## `{}`\n", r.case.name());
        let _ = writeln!(out, "{} ({better}).\n", r.case.describe());
        let _ = writeln!(
            out,
            "| subject | median | spread (min–max of {} rep medians) | {ratio_head} | note |",
            info.reps
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---|");
        for (subject, outcome) in &r.rows {
            let name = subject.name();
            match outcome {
                Outcome::Measured(measured) => {
                    let Measured {
                        summary: m,
                        note,
                        same_segment_floor,
                        ..
                    } = measured;
                    let mut note = note.clone();
                    if let (Some(w), Some(solo)) =
                        (measured.extra("writer"), measured.extra("writer_solo"))
                    {
                        if !note.is_empty() {
                            note.push_str("; ");
                        }
                        let _ = write!(
                            note,
                            "writer {} beside the reader, {} alone ({:.2}x)",
                            fmt_rate(w.median),
                            fmt_rate(solo.median),
                            w.median / solo.median
                        );
                    }
                    if let Some(f) = same_segment_floor {
                        if !note.is_empty() {
                            note.push_str("; ");
                        }
                        let _ = write!(
                            note,
                            "memcpy into the same segment, interleaved: {} (speed ratio {:.2}x)",
                            fmt_value(r.case, f.median),
                            f.median / m.median
                        );
                    }
                    let ratio = base.map_or("—".to_string(), |(_, b)| {
                        format!("{:.2}x", m.median / b.median)
                    });
                    let note = match (subject.is_floor(), note.is_empty()) {
                        (true, true) => "floor".to_string(),
                        (true, false) => format!("floor; {note}"),
                        (false, _) => note,
                    };
                    let _ = writeln!(
                        out,
                        "| {name} | {} | {} – {} | {ratio} | {note} |",
                        fmt_value(r.case, m.median),
                        fmt_value(r.case, m.lo),
                        fmt_value(r.case, m.hi),
                    );
                }
                Outcome::Unsupported(why) => {
                    let _ = writeln!(out, "| {name} | n/a | — | — | {why} |");
                }
                Outcome::Failed(why) => {
                    let _ = writeln!(
                        out,
                        "| {name} | failed | — | — | {} |",
                        why.replace('|', "/")
                    );
                }
            }
        }
        out.push('\n');
    }
    out.push_str(&crate::targets::markdown(results));
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "- kernel (`uname -r`): {}", machine.kernel);
    let _ = writeln!(out, "- cpu: {}", machine.cpu);
    let _ = writeln!(out, "- nproc: {}", machine.nproc);
    let _ = writeln!(out, "- date: {}", machine.date);
    let _ = writeln!(
        out,
        "- run: {} ({} repetitions, round-robin over subjects; cores {} and {}; {:.1} s wall)",
        info.mode, info.reps, info.cores.0, info.cores.1, info.wall_secs
    );
    out
}

/// Escapes a string for a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

/// One JSON object per measured subject and case, one per line:
/// `{"case": ..., "subject": ..., "median_ns": ..., "spread": [min, max]}` (`ops_per_s` for
/// throughput cases).
pub fn json_lines(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        let field = if r.case.is_throughput() {
            "ops_per_s"
        } else {
            "median_ns"
        };
        for (subject, outcome) in &r.rows {
            if let Outcome::Measured(measured) = outcome {
                let m = measured.summary;
                let mut extras = String::new();
                for (name, x) in &measured.extras {
                    let _ = write!(extras, ", {}: {}", json_str(name), json_num(x.median));
                }
                let _ = writeln!(
                    out,
                    "{{\"case\": {}, \"subject\": {}, \"{field}\": {}, \"spread\": [{}, {}]{extras}}}",
                    json_str(r.case.name()),
                    json_str(subject.name()),
                    json_num(m.median),
                    json_num(m.lo),
                    json_num(m.hi),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(median: f64) -> Outcome {
        Outcome::Measured(Measured::new(
            Summary {
                median,
                lo: median,
                hi: median,
                reps: 1,
            },
            String::new(),
        ))
    }

    #[test]
    fn baseline_is_seed_else_best_floor() {
        let r = CaseResult {
            case: Case::Inplace64m,
            rows: vec![
                (Subject::NcSemaphore, summary(10.0)),
                (Subject::Seed, Outcome::Unsupported("no guard".into())),
                (Subject::StdMutex, summary(9.0)),
                (Subject::Memcpy, summary(8.0)),
            ],
        };
        assert_eq!(r.baseline().map(|b| b.0), Some(Subject::Memcpy));
        let json = json_lines(&[r]);
        assert_eq!(json.lines().count(), 3);
        assert!(json.starts_with(
            "{\"case\": \"inplace_write_64m\", \"subject\": \"neocortex-semaphore\", \"median_ns\": 10.000"
        ));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
