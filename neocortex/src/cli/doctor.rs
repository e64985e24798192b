//! `neocortex doctor`: the system's IPC limits against current use, systemd-logind's
//! `RemoveIPC`, and segments that need attention (world-writable, stale, orphaned).

use std::path::{Path, PathBuf};

use neocortex::inspect::{self, Limits, SegmentInfo, Usage, Verdict, MEMBERS_SET_SEMAPHORES};
use neocortex::CortexError;

use super::exit;
use super::output::hex_key;

/// Uids up to this are system users, whose IPC objects logind never removes (systemd's
/// `SYSTEM_UID_MAX`, 999 on every common distribution).
const SYSTEM_UID_MAX: u32 = 999;

/// Runs every check and prints the report; exit code 1 when something needs fixing.
pub(crate) fn run() -> Result<i32, CortexError> {
    let mut warnings = 0;
    let limits = inspect::limits()?;
    let usage = inspect::usage()?;
    println!("IPC limits in this IPC namespace (in use / limit):");
    for line in limit_lines(&limits, &usage) {
        if line.warn {
            warnings += 1;
        }
        let mark = if line.warn { "!" } else { " " };
        println!(" {mark} {:<28} {}", line.name, line.text);
    }
    println!();
    let uid = current_uid();
    let remove_ipc = remove_ipc(Path::new("/"));
    let (warn, text) = remove_ipc_advice(&remove_ipc, uid);
    if warn {
        warnings += 1;
    }
    println!("systemd-logind RemoveIPC: {text}");
    println!();
    let segments = inspect::segments()?;
    warnings += report(
        "World-writable neocortex segments (any user can corrupt them; attach refuses them \
         unless asked by name)",
        segments
            .iter()
            .filter(|s| s.neocortex.is_some() && s.mode & 0o002 != 0),
    );
    warnings += report(
        "Stale segments (creation never finished, creator dead): `neocortex gc` removes them",
        segments.iter().filter(|s| s.verdict == Verdict::Stale),
    );
    let orphans = report(
        "Orphans (ready, creator dead, nobody attached): `neocortex gc --orphans` removes them",
        segments.iter().filter(|s| s.verdict == Verdict::Orphan),
    );
    if orphans > 0 {
        println!(
            "  (orphans may hold data someone still wants: attach, or adopt with force_ownership)"
        );
    }
    println!();
    if warnings == 0 {
        println!("doctor: nothing to fix");
        Ok(exit::OK)
    } else {
        println!("doctor: {warnings} thing(s) to look at (marked above)");
        Ok(exit::REFUSED)
    }
}

/// Prints a titled list of segments; returns how many.
fn report<'a>(title: &str, segments: impl Iterator<Item = &'a SegmentInfo>) -> usize {
    let segments: Vec<_> = segments.collect();
    if segments.is_empty() {
        println!("{title}: none");
    } else {
        println!("{title}:");
        for s in &segments {
            println!(
                "  ! {} shmid {} uid {} mode {:04o}: {}",
                hex_key(s.key),
                s.shmid,
                s.uid,
                s.mode,
                s.reason
            );
        }
    }
    segments.len()
}

/// One line of the limits report.
#[derive(Debug)]
struct LimitLine {
    name: &'static str,
    text: String,
    warn: bool,
}

/// Whether `used` is past 90% of `limit`.
fn nearly(used: u64, limit: u64) -> bool {
    u128::from(used) * 10 > u128::from(limit) * 9
}

fn limit_lines(l: &Limits, u: &Usage) -> Vec<LimitLine> {
    let line = |name, used: u64, limit: u64, unit: &str| LimitLine {
        name,
        text: format!("{used} / {limit}{unit}"),
        warn: nearly(used, limit),
    };
    let mut lines = vec![
        line("segments (shmmni)", u.segments, l.shmmni, ""),
        line(
            "segment memory (shmall)",
            u.segment_pages,
            l.shmall,
            &format!(" pages of {} bytes", l.page_size),
        ),
        LimitLine {
            name: "largest segment (shmmax)",
            text: format!("{} / {} bytes", u.largest_segment, l.shmmax),
            warn: false,
        },
        line("semaphore sets (semmni)", u.semaphore_sets, l.semmni, ""),
        line("semaphores (semmns)", u.semaphores, l.semmns, ""),
    ];
    let too_few = l.semmsl < MEMBERS_SET_SEMAPHORES;
    lines.push(LimitLine {
        name: "semaphores per set (semmsl)",
        text: if too_few {
            format!(
                "{} per set, but each neocortex segment's members set needs 2 + max_handles = \
                 {MEMBERS_SET_SEMAPHORES} with the default 64 handles: Cortex::new fails \
                 (raise kernel.sem's first field, or use CortexBuilder::max_handles({}))",
                l.semmsl,
                l.semmsl.saturating_sub(2).max(1)
            )
        } else {
            format!(
                "{} per set; neocortex needs {MEMBERS_SET_SEMAPHORES} (2 + 64 member slots) \
                 per segment, the largest set here has {}",
                l.semmsl, u.largest_set
            )
        },
        warn: too_few,
    });
    lines
}

/// What logind's configuration says about `RemoveIPC`.
#[derive(Debug, PartialEq, Eq)]
struct RemoveIpc {
    /// Whether systemd runs here at all (`/run/systemd/system` exists).
    systemd: bool,
    /// The setting, after every file; `None` when no file sets it (the default: yes).
    value: Option<bool>,
    /// The file that set it last.
    from: Option<PathBuf>,
}

/// Reads `RemoveIPC` from logind's configuration under `root`: `logind.conf` in
/// `/etc/systemd` (or `/usr/lib/systemd`, `/usr/local/lib/systemd` when `/etc` has none),
/// then the drop-ins `logind.conf.d/*.conf` of `/usr/lib`, `/usr/local/lib`, `/run` and
/// `/etc` (a name in a later directory hides the same name in an earlier one), in the
/// order of their names; the last setting wins.
fn remove_ipc(root: &Path) -> RemoveIpc {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let main = [
        "/etc/systemd/logind.conf",
        "/run/systemd/logind.conf",
        "/usr/local/lib/systemd/logind.conf",
        "/usr/lib/systemd/logind.conf",
    ]
    .into_iter()
    .map(at)
    .find(|p| p.is_file());
    let mut dropins: std::collections::BTreeMap<std::ffi::OsString, PathBuf> = Default::default();
    for dir in [
        "/usr/lib/systemd/logind.conf.d",
        "/usr/local/lib/systemd/logind.conf.d",
        "/run/systemd/logind.conf.d",
        "/etc/systemd/logind.conf.d",
    ] {
        let Ok(entries) = std::fs::read_dir(at(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "conf") {
                dropins.insert(entry.file_name(), path);
            }
        }
    }
    let mut found = RemoveIpc {
        systemd: at("/run/systemd/system").is_dir(),
        value: None,
        from: None,
    };
    for file in main.into_iter().chain(dropins.into_values()) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(value) = parse_remove_ipc(&text) {
            found.value = Some(value);
            found.from = Some(file);
        }
    }
    found
}

/// The last `RemoveIPC=` of the `[Login]` section of a logind configuration file.
fn parse_remove_ipc(text: &str) -> Option<bool> {
    let mut in_login = false;
    let mut value = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_login = line == "[Login]";
            continue;
        }
        if !in_login || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((name, setting)) = line.split_once('=') else {
            continue;
        };
        if name.trim() == "RemoveIPC" {
            value = match setting.trim().to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" | "1" => Some(true),
                "no" | "false" | "off" | "0" => Some(false),
                _ => value,
            };
        }
    }
    value
}

/// Whether `RemoveIPC` puts this user's segments at risk, and what to do.
fn remove_ipc_advice(found: &RemoveIpc, uid: u32) -> (bool, String) {
    let source = found.from.as_ref().map_or_else(
        || "no file sets it: the default, yes".to_owned(),
        |f| format!("set in {}", f.display()),
    );
    let on = found.value.unwrap_or(true);
    if !found.systemd {
        return (
            false,
            format!(
                "{} ({source}), but systemd is not running here (no /run/systemd/system): \
                 nothing removes segments at logout",
                if on { "yes" } else { "no" }
            ),
        );
    }
    if !on {
        return (false, format!("no ({source}): segments survive logout"));
    }
    if uid <= SYSTEM_UID_MAX {
        return (
            false,
            format!(
                "yes ({source}), but uid {uid} is a system user (uid <= {SYSTEM_UID_MAX}), whose \
                 segments logind never removes"
            ),
        );
    }
    (
        true,
        format!(
            "yes ({source}): when uid {uid} logs out of its last session, logind removes every \
             segment and semaphore set it owns, and processes still using them get LockRemoved. \
             Fix: set RemoveIPC=no in /etc/systemd/logind.conf.d/neocortex.conf ([Login] \
             section) and restart systemd-logind; or run the programs as a system user; or \
             `loginctl enable-linger` the user so it never fully logs out"
        ),
    )
}

/// This process's uid, from `/proc/self/status` (`0` when it cannot be read).
fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2)?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_ipc_is_read_from_the_login_section_last_one_wins() {
        assert_eq!(parse_remove_ipc(""), None);
        assert_eq!(parse_remove_ipc("[Login]\n#RemoveIPC=yes\n"), None);
        assert_eq!(parse_remove_ipc("[Login]\nRemoveIPC=no\n"), Some(false));
        assert_eq!(
            parse_remove_ipc("[Login]\nRemoveIPC = no\nRemoveIPC=yes\n"),
            Some(true)
        );
        assert_eq!(parse_remove_ipc("[Other]\nRemoveIPC=no\n"), None);
        assert_eq!(parse_remove_ipc("[Login]\nRemoveIPC=maybe\n"), None);
    }

    #[test]
    fn drop_ins_override_the_main_file_in_name_order() {
        let root = std::env::temp_dir().join(format!("neocortex-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |p: &str, text: &str| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        assert_eq!(
            remove_ipc(&root),
            RemoveIpc {
                systemd: false,
                value: None,
                from: None
            }
        );
        write("etc/systemd/logind.conf", "[Login]\nRemoveIPC=yes\n");
        write("run/systemd/system/.keep", "");
        write(
            "usr/lib/systemd/logind.conf.d/10-a.conf",
            "[Login]\nRemoveIPC=no\n",
        );
        write(
            "etc/systemd/logind.conf.d/20-b.conf",
            "[Login]\nRemoveIPC=yes\n",
        );
        // The same name in /etc hides the one in /usr/lib.
        write(
            "usr/lib/systemd/logind.conf.d/20-b.conf",
            "[Login]\nRemoveIPC=no\n",
        );
        write(
            "etc/systemd/logind.conf.d/ignored.txt",
            "[Login]\nRemoveIPC=no\n",
        );
        let found = remove_ipc(&root);
        assert_eq!(found.value, Some(true));
        assert!(found.systemd);
        assert!(found
            .from
            .unwrap()
            .ends_with("etc/systemd/logind.conf.d/20-b.conf"));
        write(
            "etc/systemd/logind.conf.d/30-c.conf",
            "[Login]\nRemoveIPC=no\n",
        );
        assert_eq!(remove_ipc(&root).value, Some(false));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn advice_warns_only_regular_users_under_systemd() {
        let on = RemoveIpc {
            systemd: true,
            value: None,
            from: None,
        };
        let (warn, text) = remove_ipc_advice(&on, 1000);
        assert!(warn && text.contains("RemoveIPC=no"), "{text}");
        assert!(text.contains("the default, yes"), "{text}");
        assert!(!remove_ipc_advice(&on, 0).0);
        assert!(!remove_ipc_advice(&on, 999).0);
        let off = RemoveIpc {
            value: Some(false),
            ..on
        };
        assert!(!remove_ipc_advice(&off, 1000).0);
        let no_systemd = RemoveIpc {
            systemd: false,
            value: None,
            from: None,
        };
        let (warn, text) = remove_ipc_advice(&no_systemd, 1000);
        assert!(!warn && text.contains("not running"), "{text}");
    }

    #[test]
    fn limits_warn_near_the_top_and_when_sets_are_too_small() {
        assert!(nearly(91, 100) && !nearly(90, 100) && !nearly(0, 0));
        assert!(nearly(u64::MAX, u64::MAX - 1));
        let text: String = format!("{:?}", limit_lines_for_test(250));
        assert!(!text.contains("warn: true"), "{text}");
        let small = limit_lines_for_test(32);
        let semmsl = small.last().unwrap();
        assert!(
            semmsl.warn && semmsl.text.contains("max_handles(30)"),
            "{semmsl:?}"
        );
    }

    /// This machine's limits with `semmsl` changed, against no use at all.
    fn limit_lines_for_test(semmsl: u64) -> Vec<LimitLine> {
        let mut limits = inspect::limits().expect("limits");
        limits.semmsl = semmsl;
        limit_lines(&limits, &Usage::default())
    }
}
