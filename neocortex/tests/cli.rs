//! The `neocortex` binary against real segments: ready, half-made by a killed creator,
//! orphaned, attached, foreign and another user's. Each test runs its body in a private IPC
//! namespace (the binary looks at every segment there) and checks the output, the exit
//! codes, and that whatever must survive does, byte for byte.
#![cfg(all(feature = "cli", target_os = "linux"))]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::debris::{self, orphan, sets, snapshot, stale};
use common::{fork, in_private_ipc_namespace, park, unique_key, Exit, Pipe};
use neocortex::{
    Cortex, ErrorKind, RwSemaphore, Semaphore, SemaphorePermission, SemaphoreSettings,
    SysvSemaphore,
};
use neocortex_sys::shm;
use serde_json::Value;

/// What a run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`.
fn neocortex(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_neocortex"))
        .args(args)
        .output()
        .expect("run the neocortex binary");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8"),
    }
}

/// Runs the binary, expects exit code `code`, returns the run.
#[track_caller]
fn expect(code: i32, args: &[&str]) -> Run {
    let run = neocortex(args);
    assert_eq!(run.code, code, "neocortex {args:?}: {run:?}");
    run
}

/// The JSON a successful run printed.
#[track_caller]
fn json(args: &[&str]) -> Value {
    let run = expect(0, args);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `list --json [--all]`, by key.
fn listed(all: bool) -> BTreeMap<i64, Value> {
    let args: &[&str] = if all {
        &["list", "--json", "--all"]
    } else {
        &["list", "--json"]
    };
    json(args)["segments"]
        .as_array()
        .expect("a list of segments")
        .iter()
        .map(|s| (s["key"].as_i64().expect("a numeric key"), s.clone()))
        .collect()
}

fn hex(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

fn me() -> i64 {
    i64::from(std::process::id())
}

/// A child attached to the segment on `key` until killed.
fn attached(key: i32) -> common::Child {
    let ready = Pipe::new();
    let child = fork(|| {
        let _mine: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
        ready.send(1);
        park()
    });
    ready.recv();
    child
}

#[test]
fn list_and_inspect_describe_every_kind_of_segment() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = |n: &str| unique_key(&format!("list_and_inspect_{n}"));
        let half = stale::<SysvSemaphore>(key("half"));
        let orphaned = orphan::<[u32; 4], RwSemaphore>(key("orphan"), [1, 2, 3, 4]);
        let used = orphan::<u64, Semaphore>(key("used"), 5);
        let user = attached(key("used"));
        // Made after the long-lived child, which would otherwise inherit its mapping.
        let live: Cortex<u64, Semaphore> = Cortex::new(key("live"), 7, None).unwrap();
        live.write(8).unwrap();
        let foreign = debris::foreign(key("foreign"), 4096, 0x5a);
        let died: Cortex<u64, SysvSemaphore> = Cortex::new(key("died"), 1, None).unwrap();
        let holder = {
            let held = Pipe::new();
            // Keys hash the pid: name them here, not in the child.
            let died_key = key("died");
            let child = fork(|| {
                let mine: Cortex<u64, SysvSemaphore> = Cortex::attach(died_key).unwrap();
                let _guard = mine.lock().unwrap();
                held.send(1);
                park()
            });
            held.recv();
            child.signal(libc::SIGKILL);
            let pid = child.pid();
            assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
            pid
        };

        let ours = listed(false);
        assert_eq!(ours.len(), 5, "neocortex segments only: {ours:#?}");
        let of = |n: &str| &ours[&i64::from(key(n))];
        let s = of("live");
        assert_eq!(s["shmid"], live.segment_id());
        assert_eq!(
            (s["neocortex"].clone(), s["mode"].clone()),
            (true.into(), "0600".into())
        );
        assert_eq!(
            (s["type"].clone(), s["lock"].clone()),
            ("u64".into(), "semaphore".into())
        );
        assert_eq!(s["state"], "ready");
        assert_eq!(
            (s["creator_pid"].as_i64(), s["creator_alive"].as_bool()),
            (Some(me()), Some(true))
        );
        assert_eq!(
            (s["owner_died"].as_bool(), s["version"].as_u64()),
            (Some(false), Some(1))
        );
        assert_eq!(
            (s["attached"].as_u64(), s["verdict"].as_str()),
            (Some(1), Some("in-use"))
        );
        assert_eq!(
            s["size"].as_u64(),
            Some(shm::stat(live.segment_id()).unwrap().size)
        );
        let s = of("half");
        assert_eq!(
            (s["state"].as_str(), s["verdict"].as_str()),
            (Some("initializing"), Some("stale"))
        );
        assert_eq!(
            (s["lock"].as_str(), s["creator_alive"].as_bool()),
            (Some("sysv-semaphore"), Some(false))
        );
        assert_eq!(s["shmid"], half);
        let s = of("orphan");
        assert_eq!(
            (s["type"].as_str(), s["lock"].as_str()),
            (Some("[u32; 4]"), Some("sysv-rw-semaphore"))
        );
        assert_eq!(
            (s["state"].as_str(), s["verdict"].as_str()),
            (Some("ready"), Some("orphan"))
        );
        assert_eq!(
            (s["attached"].as_u64(), s["shmid"].as_i64()),
            (Some(0), Some(i64::from(orphaned)))
        );
        let s = of("used");
        assert_eq!(
            (s["attached"].as_u64(), s["creator_alive"].as_bool()),
            (Some(1), Some(false))
        );
        assert_eq!(
            (s["verdict"].as_str(), s["shmid"].as_i64()),
            (Some("in-use"), Some(i64::from(used)))
        );
        let s = of("died");
        assert_eq!(s["owner_died"].as_bool(), Some(true), "{s:#}");
        assert_eq!(s["dead_holder"].as_i64(), Some(i64::from(holder)));
        assert!(!ours.contains_key(&i64::from(key("foreign"))));

        let everything = listed(true);
        assert_eq!(everything.len(), 6);
        let s = &everything[&i64::from(key("foreign"))];
        assert_eq!(
            (s["neocortex"].as_bool(), s["verdict"].as_str()),
            (Some(false), Some("foreign"))
        );
        assert_eq!(
            (s["shmid"].as_i64(), s["size"].as_u64()),
            (Some(i64::from(foreign)), Some(4096))
        );
        for field in [
            "type",
            "lock",
            "state",
            "creator_pid",
            "creator_alive",
            "owner_died",
            "version",
        ] {
            assert!(s[field].is_null(), "{field} of a foreign segment: {s:#}");
        }

        let table = expect(0, &["list"]).stdout;
        assert!(table.starts_with("KEY"), "{table}");
        assert_eq!(
            table.lines().count(),
            6,
            "a header and five segments: {table}"
        );
        assert!(
            table.contains(&hex(key("half"))) && table.contains("initializing"),
            "{table}"
        );
        assert!(!table.contains(&hex(key("foreign"))), "{table}");
        let table = expect(0, &["list", "--all"]).stdout;
        assert!(
            table.contains(&hex(key("foreign"))) && table.contains("foreign"),
            "{table}"
        );

        let one = json(&["inspect", &hex(key("live")), "--json"]);
        assert_eq!(one["key"].as_i64(), Some(i64::from(key("live"))));
        assert_eq!(one["attached_pids"], serde_json::json!([me()]));
        assert_eq!(
            one["members"],
            serde_json::json!([{"pid": me(), "slot": one["members"][0]["slot"], "creator": true}])
        );
        assert_eq!(
            one["semaphore_sets"],
            serde_json::json!(live.semaphore_sets())
        );
        assert_eq!(one["layout"]["element_size"].as_u64(), Some(8));
        assert_eq!(one["layout"]["shape"].as_str(), Some("value"));
        assert!(one["holder"].is_null());
        {
            let _held = live.lock().unwrap();
            let one = json(&["inspect", &key("live").to_string(), "--json"]);
            assert_eq!(one["holder"].as_i64(), Some(me()));
        }
        let used_json = json(&["inspect", &hex(key("used")), "--json"]);
        assert_eq!(used_json["attached_pids"], serde_json::json!([user.pid()]));
        let text = expect(0, &["inspect", &hex(key("orphan"))]).stdout;
        assert!(text.contains("verdict: orphan"), "{text}");
        assert!(text.contains("lock: sysv-rw-semaphore, free"), "{text}");
        assert!(text.contains("[u32; 4]"), "{text}");
        let text = expect(0, &["inspect", &hex(key("foreign"))]).stdout;
        assert!(text.contains("not a neocortex segment"), "{text}");

        // Looking changed nothing.
        assert_eq!(live.read().unwrap(), 8);
        drop(user);
        let mut made = common::Made::of(&live).and(&died);
        made.key = key("live");
        drop((live, died));
        made.assert_gone();
        for k in ["half", "orphan", "used"] {
            expect(0, &["rm", &hex(key(k))]);
        }
        debris::remove(foreign, &[]);
        assert_eq!(common::namespace_objects(), (vec![], vec![]));
    });
}

#[test]
fn gc_removes_exactly_the_debris_and_gc_orphans_the_orphans() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = |n: &str| unique_key(&format!("gc_removes_exactly_{n}"));
        let live: Cortex<u64, Semaphore> = Cortex::new(key("live"), 1, None).unwrap();
        let half_futex = stale::<Semaphore>(key("half_futex"));
        let half_sysv = stale::<SysvSemaphore>(key("half_sysv"));
        let orphaned = orphan::<u64, SysvSemaphore>(key("orphan"), 2);
        let used = orphan::<u64, Semaphore>(key("used"), 3);
        let user = attached(key("used"));
        let blank = debris::foreign(key("blank"), 8192, 0);
        let foreign = debris::foreign(key("foreign"), 4096, 0xa5);
        let sets_of = |k: &str| -> Vec<i32> {
            let one = json(&["inspect", &hex(key(k)), "--json"]);
            one["semaphore_sets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_i64().unwrap() as i32)
                .collect()
        };
        let (half_sysv_sets, orphan_sets) = (sets_of("half_sysv"), sets_of("orphan"));
        assert_eq!(half_sysv_sets.len(), 2, "members and the lock's own set");
        let sets_before = sets();
        let before = snapshot();

        let dry = expect(0, &["gc", "--dry-run"]).stdout;
        let would: Vec<&str> = dry
            .lines()
            .filter(|l| l.starts_with("would remove"))
            .collect();
        assert_eq!(would.len(), 2, "{dry}");
        assert!(dry.contains(&hex(key("half_futex"))) && dry.contains(&hex(key("half_sysv"))));
        assert!(dry.contains("1 orphan(s) left"), "{dry}");
        assert_eq!(snapshot(), before, "a dry run changes nothing");

        let gc = expect(0, &["gc"]).stdout;
        assert_eq!(
            gc.lines().filter(|l| l.starts_with("removed")).count(),
            2,
            "{gc}"
        );
        assert!(gc.contains("gc: removed 2 segment(s)"), "{gc}");
        let mut left = before.clone();
        left.remove(&half_futex);
        left.remove(&half_sysv);
        assert_eq!(snapshot(), left, "everything else survives byte for byte");
        let gone_sets: Vec<i32> = sets_before.difference(&sets()).copied().collect();
        assert_eq!(
            gone_sets.len(),
            3,
            "the debris' members sets and the SysV lock's set"
        );
        assert!(half_sysv_sets.iter().all(|s| gone_sets.contains(s)));
        assert_eq!(
            expect(0, &["gc"])
                .stdout
                .lines()
                .filter(|l| l.starts_with("removed"))
                .count(),
            0
        );

        let dry = expect(0, &["gc", "--orphans", "--dry-run"]).stdout;
        assert!(
            dry.contains(&format!("would remove  {}", hex(key("orphan")))),
            "{dry}"
        );
        assert_eq!(snapshot(), left);
        let gc = expect(0, &["gc", "--orphans"]).stdout;
        assert!(
            gc.contains(&format!("removed       {}", hex(key("orphan")))),
            "{gc}"
        );
        left.remove(&orphaned);
        assert_eq!(
            snapshot(),
            left,
            "the live, attached and foreign segments survive"
        );
        assert!(orphan_sets.iter().all(|s| !sets().contains(s)));
        for id in [live.segment_id(), used, blank, foreign] {
            assert!(left.contains_key(&id));
        }

        drop(user);
        expect(0, &["rm", &hex(key("used"))]);
        debris::remove(blank, &[]);
        debris::remove(foreign, &[]);
        let made = common::Made::of(&live);
        drop(live);
        made.assert_gone();
        assert_eq!(common::namespace_objects(), (vec![], vec![]));
    });
}

#[test]
fn rm_refuses_what_is_in_use_and_removes_on_request() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = |n: &str| unique_key(&format!("rm_refuses_{n}"));
        // A creator that detached lives on: refused, then forced.
        let creator: Cortex<u64, Semaphore> = Cortex::new(key("creator"), 1, None).unwrap();
        let made = common::Made::of(&creator);
        creator.detach().unwrap();
        let before = snapshot();
        let refused = expect(1, &["rm", &hex(key("creator"))]);
        assert!(refused.stderr.contains("running process"), "{refused:?}");
        assert!(refused.stderr.contains("--force"), "{refused:?}");
        assert_eq!(snapshot(), before);
        expect(0, &["rm", "--force", &hex(key("creator"))]);
        made.assert_gone();

        // Attached: refused, naming who; forced, the attached process is told.
        let used = orphan::<u64, Semaphore>(key("used"), 4);
        let used_sets = json(&["inspect", &hex(key("used")), "--json"])["semaphore_sets"].clone();
        let (ready, go) = (Pipe::new(), Pipe::new());
        let used_key = key("used");
        let user = fork(|| {
            let mine: Cortex<u64, Semaphore> = Cortex::attach(used_key).unwrap();
            ready.send(1);
            go.recv();
            match mine.read() {
                Err(e) if e.kind() == ErrorKind::LockRemoved => 0,
                _ => 1,
            }
        });
        ready.recv();
        let before = snapshot();
        let refused = expect(1, &["rm", &key("used").to_string()]);
        assert!(
            refused.stderr.contains(&format!("pids {}", user.pid())),
            "{refused:?}"
        );
        assert_eq!(snapshot(), before);
        let forced = expect(0, &["rm", "--force", &hex(key("used"))]);
        assert!(forced.stdout.contains("LockRemoved"), "{forced:?}");
        go.send(1);
        user.expect_success("the attached process saw LockRemoved");
        let used_sets: Vec<i32> = used_sets
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_i64().unwrap() as i32)
            .collect();
        common::assert_gone(key("used"), &[used], &used_sets);

        // An orphan goes without force; a foreign segment never.
        let orphaned = orphan::<u64, SysvSemaphore>(key("orphan"), 5);
        let removed = expect(0, &["rm", &hex(key("orphan"))]);
        assert!(removed.stdout.starts_with("removed"), "{removed:?}");
        assert!(shm::stat(orphaned).is_err());
        let foreign = debris::foreign(key("foreign"), 4096, 1);
        let before = snapshot();
        let foreign_key = hex(key("foreign"));
        for args in [
            vec!["rm", "--force", &foreign_key],
            vec!["rm", &foreign_key],
        ] {
            let refused = expect(1, &args);
            assert!(
                refused.stderr.contains("never removes a foreign"),
                "{refused:?}"
            );
        }
        assert_eq!(snapshot(), before);
        debris::remove(foreign, &[]);

        // Not found, bad usage, help.
        expect(1, &["rm", &hex(key("nothing"))]);
        expect(1, &["inspect", &hex(key("nothing"))]);
        expect(2, &["rm", "0"]);
        expect(2, &["inspect", "not-a-key"]);
        expect(2, &["rm"]);
        expect(2, &["frobnicate"]);
        expect(2, &["list", "--frobnicate"]);
        let help = expect(0, &["--help"]).stdout;
        assert!(
            help.contains("Exit codes") && help.contains("3  system error"),
            "{help}"
        );
        assert_eq!(common::namespace_objects(), (vec![], vec![]));
    });
}

#[test]
fn another_users_segments_are_left_alone_by_every_command() {
    let _guard = common::watchdog();
    if !common::other_user_available() {
        return;
    }
    in_private_ipc_namespace(|| {
        let key = |n: &str| unique_key(&format!("another_users_{n}"));
        let theirs = |k: i32, kill: bool| {
            let child = fork(move || {
                if !common::become_nobody() {
                    return 3;
                }
                if kill {
                    neocortex_core::failpoints::set(
                        "create.before_publish",
                        Some(neocortex_core::failpoints::Action::Kill),
                    );
                }
                match Cortex::<u64, SysvSemaphore>::new(k, 1, None) {
                    Ok(c) => {
                        std::mem::forget(c);
                        0
                    }
                    Err(_) => 2,
                }
            });
            let expected = if kill {
                Exit::Signal(libc::SIGKILL)
            } else {
                Exit::Code(0)
            };
            assert_eq!(child.wait(), expected);
        };
        theirs(key("orphan"), false);
        theirs(key("half"), true);
        let listed = listed(false);
        for k in ["orphan", "half"] {
            let s = &listed[&i64::from(key(k))];
            assert_eq!(
                (s["uid"].as_u64(), s["verdict"].as_str()),
                (Some(65534), Some("other-user"))
            );
            assert_eq!(s["creator_alive"].as_bool(), Some(false));
        }
        let before = snapshot();
        let gc = expect(0, &["gc", "--orphans"]).stdout;
        assert!(gc.contains("gc: removed 0 segment(s)"), "{gc}");
        for k in ["orphan", "half"] {
            let refused = expect(1, &["rm", "--force", &hex(key(k))]);
            assert!(refused.stderr.contains("another user"), "{refused:?}");
        }
        assert_eq!(snapshot(), before, "untouched, byte for byte");
        for k in ["orphan", "half"] {
            let one = json(&["inspect", &hex(key(k)), "--json"]);
            let sets: Vec<i32> = one["semaphore_sets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_i64().unwrap() as i32)
                .collect();
            debris::remove(one["shmid"].as_i64().unwrap() as i32, &sets);
        }
        assert_eq!(common::namespace_objects(), (vec![], vec![]));
    });
}

#[test]
fn doctor_reports_limits_world_writable_and_stale_segments() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = |n: &str| unique_key(&format!("doctor_reports_{n}"));
        let clean = neocortex(&["doctor"]);
        assert!(
            clean.stdout.contains("semaphores per set (semmsl)"),
            "{clean:?}"
        );
        assert!(clean.stdout.contains("RemoveIPC"), "{clean:?}");
        let settings = SemaphoreSettings {
            mode: SemaphorePermission::FullAccessForEveryone,
        };
        let open: Cortex<u64, Semaphore> = Cortex::new(key("open"), 1, Some(&settings)).unwrap();
        let half = stale::<Semaphore>(key("half"));
        let report = expect(1, &["doctor"]);
        let text = &report.stdout;
        assert!(text.contains("segments (shmmni)            2 / "), "{text}");
        let ww = text.find("World-writable").unwrap();
        let st = text.find("Stale segments").unwrap();
        assert!(text[ww..st].contains(&hex(key("open"))), "{text}");
        assert!(text[st..].contains(&hex(key("half"))), "{text}");
        // A kernel that allows fewer semaphores per set than a members set needs.
        if std::fs::write("/proc/sys/kernel/sem", "32 32000 32 128").is_ok() {
            let text = expect(1, &["doctor"]).stdout;
            assert!(text.contains("max_handles(30)"), "{text}");
        }
        expect(0, &["gc"]);
        assert!(shm::stat(half).is_err());
        let made = common::Made::of(&open);
        drop(open);
        made.assert_gone();
    });
}
