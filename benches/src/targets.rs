//! The project's performance targets (the ratios its users judge it by), evaluated on the medians of one run.
//!
//! A target is a ratio of two figures measured side by side in the same run (or, for the
//! takeover time, one figure against an absolute aim). The report lists every target with
//! its measured value and whether it holds; nothing here asserts anything in a test.

use std::fmt::Write as _;

use crate::measure::Summary;
use crate::report::{fmt_time, CaseResult};
use crate::subjects::{Case, Subject};

/// Which figure of a subject's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// The row's median.
    Median,
    /// A named extra figure of the row (`writer`, `writer_solo`).
    Extra(&'static str),
    /// The row's same-segment floor (`memcpy` into the very same bytes, interleaved).
    SameSegmentFloor,
}

/// The bound a target puts on its ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// At most this.
    AtMost(f64),
    /// At least this.
    AtLeast(f64),
    /// No bound: the figure is reported.
    Report,
}

/// A target: `subject`'s figure over `against`'s in `case` (or `subject`'s figure alone,
/// in nanoseconds, when `against` is `None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// The case.
    pub case: Case,
    /// The numerator's subject.
    pub subject: Subject,
    /// The numerator's figure.
    pub metric: Metric,
    /// The denominator, if any.
    pub against: Option<(Subject, Metric)>,
    /// The bound.
    pub bound: Bound,
    /// A speed ratio: the denominator's time over the numerator's.
    pub speed: bool,
}

fn ratio(case: Case, subject: Subject, against: Subject, bound: Bound) -> Target {
    Target {
        case,
        subject,
        metric: Metric::Median,
        against: Some((against, Metric::Median)),
        bound,
        speed: false,
    }
}

/// The performance targets: first the raised ones, then the regression guards.
pub fn targets() -> Vec<Target> {
    use Bound::{AtLeast, AtMost, Report};
    use Subject::*;
    let mut v = vec![
        ratio(Case::ReadU64, NcSemaphore, Seed, AtMost(0.9)),
        ratio(Case::ReadU64, NcSemaphore, Futex, AtMost(1.5)),
        ratio(Case::Contended8b, NcSemaphore, Seed, AtLeast(1.2)),
        ratio(Case::ReadU64, NcSeqLock, Seed, AtMost(0.35)),
        ratio(Case::Read4k, NcSeqLock, Memcpy, AtMost(1.5)),
        Target {
            case: Case::Seqlock1w1r,
            subject: NcSeqLock,
            metric: Metric::Extra("writer"),
            against: Some((NcSeqLock, Metric::Extra("writer_solo"))),
            bound: AtLeast(0.8),
            speed: false,
        },
        ratio(Case::Seqlock1w1r, NcSeqLock, NcSemaphore, AtLeast(3.0)),
    ];
    for (lock, bound) in [(NcSemaphore, AtMost(5e6)), (NcSysvSemaphore, Report)] {
        v.push(Target {
            case: Case::Takeover,
            subject: lock,
            metric: Metric::Median,
            against: None,
            bound,
            speed: false,
        });
    }
    v.extend([
        ratio(Case::NotifyRoundtrip, NcSemaphore, Futex, AtMost(1.2)),
        ratio(
            Case::NotifyRoundtrip,
            NcSemaphore,
            SharedMemory,
            AtMost(1.0),
        ),
        ratio(Case::Write4k, NcSemaphore, Seed, AtMost(1.0)),
    ]);
    for lock in [NcSemaphore, NcSysvSemaphore, NcRwSemaphore, NcSeqLock] {
        v.push(ratio(Case::SliceRead1m, lock, Memcpy, Report));
    }
    // Regression guards.
    v.extend([
        ratio(Case::ReadU64, NcSemaphore, SharedMemory, AtMost(0.6)),
        ratio(Case::ReadU64, NcSysvSemaphore, SemopUndo, AtMost(1.15)),
        ratio(Case::Contended8b, NcSemaphore, PthreadRobust, AtLeast(1.0)),
        ratio(Case::Contended4k, NcSemaphore, PthreadRobust, AtLeast(1.0)),
    ]);
    for lock in [NcSemaphore, NcSysvSemaphore, NcRwSemaphore, NcSeqLock] {
        v.push(ratio(Case::CreateDrop, lock, ShmSemCycle, AtMost(1.5)));
    }
    for lock in [NcSemaphore, NcSysvSemaphore, NcRwSemaphore] {
        for against in [(Memcpy, Metric::Median), (lock, Metric::SameSegmentFloor)] {
            v.push(Target {
                case: Case::Inplace64m,
                subject: lock,
                metric: Metric::Median,
                against: Some(against),
                bound: AtLeast(0.9),
                speed: true,
            });
        }
    }
    v
}

fn figure(results: &[CaseResult], case: Case, subject: Subject, metric: Metric) -> Option<f64> {
    let m = results.iter().find(|r| r.case == case)?.measured(subject)?;
    let s: Summary = match metric {
        Metric::Median => m.summary,
        Metric::Extra(name) => m.extra(name)?,
        Metric::SameSegmentFloor => m.same_segment_floor?,
    };
    Some(s.median)
}

/// A target's measured value (a ratio, or nanoseconds without a denominator), if every
/// figure it needs was measured.
pub fn measured(results: &[CaseResult], t: &Target) -> Option<f64> {
    let a = figure(results, t.case, t.subject, t.metric)?;
    let Some((against, metric)) = t.against else {
        return Some(a);
    };
    let b = figure(results, t.case, against, metric)?;
    Some(if t.speed { b / a } else { a / b })
}

/// Whether the measured value holds its bound (`None` for a reported figure).
pub fn holds(t: &Target, x: f64) -> Option<bool> {
    match t.bound {
        Bound::AtMost(limit) => Some(x <= limit),
        Bound::AtLeast(limit) => Some(x >= limit),
        Bound::Report => None,
    }
}

fn metric_label(subject: Subject, metric: Metric) -> String {
    match metric {
        Metric::Median => subject.name().to_string(),
        Metric::Extra("writer") => format!("{} writer beside the reader", subject.name()),
        Metric::Extra("writer_solo") => "the same writer alone".to_string(),
        Metric::Extra(other) => format!("{} {other}", subject.name()),
        Metric::SameSegmentFloor => "memcpy into its own segment (interleaved)".to_string(),
    }
}

/// What the target compares, in words.
pub fn label(t: &Target) -> String {
    let num = metric_label(t.subject, t.metric);
    match t.against {
        None => format!("{num} (median)"),
        Some((s, m)) if t.speed => format!("speed {num} / {}", metric_label(s, m)),
        Some((s, m)) => format!("{num} / {}", metric_label(s, m)),
    }
}

fn fmt_measured(t: &Target, x: f64) -> String {
    if t.against.is_none() {
        fmt_time(x)
    } else {
        format!("{x:.2}x")
    }
}

fn fmt_bound(t: &Target) -> String {
    let show = |limit: f64| {
        if t.against.is_none() {
            fmt_time(limit)
        } else {
            format!("{limit:.2}x")
        }
    };
    match t.bound {
        Bound::AtMost(limit) => format!("≤ {}", show(limit)),
        Bound::AtLeast(limit) => format!("≥ {}", show(limit)),
        Bound::Report => "report".to_string(),
    }
}

/// The verdict column: met, missed by how much, reported, or not measured.
pub fn verdict(t: &Target, x: Option<f64>) -> String {
    let Some(x) = x else {
        return "not measured".to_string();
    };
    match (holds(t, x), t.bound) {
        (None, _) => "reported".to_string(),
        (Some(true), _) => "met".to_string(),
        (Some(false), Bound::AtLeast(limit)) => {
            format!("missed by {:.0}%", (1.0 - x / limit) * 100.0)
        }
        (Some(false), Bound::AtMost(limit)) => {
            format!("missed by {:.0}%", (x / limit - 1.0) * 100.0)
        }
        (Some(false), Bound::Report) => unreachable!("a reported figure has no verdict"),
    }
}

/// The targets table for the cases that ran.
pub fn markdown(results: &[CaseResult]) -> String {
    let mut out = String::from("## Targets, from the medians above\n\n");
    out.push_str("| case | ratio | target | measured | verdict |\n|---|---|---:|---:|---|\n");
    for t in targets() {
        if !results.iter().any(|r| r.case == t.case) {
            continue;
        }
        let x = measured(results, &t);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            t.case.name(),
            label(&t),
            fmt_bound(&t),
            x.map_or("—".to_string(), |x| fmt_measured(&t, x)),
            verdict(&t, x),
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Measured, Outcome};

    fn row(subject: Subject, median: f64, extras: Vec<(&'static str, f64)>) -> (Subject, Outcome) {
        let s = |median| Summary {
            median,
            lo: median,
            hi: median,
            reps: 1,
        };
        let mut m = Measured::new(s(median), String::new());
        m.extras = extras.into_iter().map(|(n, x)| (n, s(x))).collect();
        (subject, Outcome::Measured(m))
    }

    #[test]
    fn ratios_extras_and_absolute_figures() {
        let results = vec![
            CaseResult {
                case: Case::Seqlock1w1r,
                rows: vec![
                    row(
                        Subject::NcSeqLock,
                        90.0,
                        vec![("writer", 8.0), ("writer_solo", 10.0)],
                    ),
                    row(Subject::NcSemaphore, 10.0, vec![]),
                ],
            },
            CaseResult {
                case: Case::Takeover,
                rows: vec![row(Subject::NcSemaphore, 2e6, vec![])],
            },
        ];
        let all = targets();
        let writer = all
            .iter()
            .find(|t| t.case == Case::Seqlock1w1r && t.metric == Metric::Extra("writer"))
            .expect("the writer target");
        assert_eq!(measured(&results, writer), Some(0.8));
        assert_eq!(verdict(writer, Some(0.8)), "met");
        assert_eq!(verdict(writer, Some(0.6)), "missed by 25%");
        let reader = all
            .iter()
            .find(|t| t.case == Case::Seqlock1w1r && t.metric == Metric::Median)
            .expect("the reader target");
        assert_eq!(measured(&results, reader), Some(9.0));
        let takeover = all
            .iter()
            .find(|t| t.case == Case::Takeover && t.subject == Subject::NcSemaphore)
            .expect("the takeover aim");
        assert_eq!(measured(&results, takeover), Some(2e6));
        assert_eq!(verdict(takeover, Some(2e6)), "met");
        let table = markdown(&results);
        assert!(table.contains("| `takeover_after_kill` | neocortex-semaphore (median) | ≤ 5.00 ms | 2.00 ms | met |"), "{table}");
        assert!(table.contains("not measured"));
    }
}
