//! How the binary prints segments: a table, one line, a detailed report, or JSON.
//!
//! The JSON field names are fixed (scripts read them); new fields may be appended.

use std::fmt::Write as _;

use neocortex::inspect::{Member, NeocortexInfo, SegmentInfo, Shape};
use serde_json::{json, Value};

/// The key as `ipcs` prints it.
pub(crate) fn hex_key(key: i32) -> String {
    format!("{:#010x}", key as u32)
}

/// The mode as an octal string, `"0600"`.
fn mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// "1234 alive", "1234 dead", "1234 ?".
fn creator(nc: &NeocortexInfo) -> String {
    let alive = match nc.creator_alive {
        Some(true) => "alive",
        Some(false) => "dead",
        None => "?",
    };
    format!("{} {alive}", nc.creator_pid)
}

/// "ready", "initializing", with "owner died" or "removed" when so.
fn state(nc: &NeocortexInfo) -> String {
    let mut state = nc.state.as_str().to_owned();
    if nc.owner_died {
        state += ", owner died";
    }
    if nc.removed {
        state += ", removed";
    }
    state
}

/// A table of segments with aligned columns, a header line first.
pub(crate) fn table(segments: &[SegmentInfo]) -> String {
    let header = [
        "KEY", "SHMID", "OWNER", "MODE", "SIZE", "ATT", "TYPE", "LOCK", "STATE", "CREATOR",
        "VERSION", "VERDICT",
    ];
    let rows: Vec<Vec<String>> = segments
        .iter()
        .map(|s| {
            let nc = s.neocortex.as_ref();
            let or_dash = |f: &dyn Fn(&NeocortexInfo) -> String| nc.map_or("-".into(), f);
            vec![
                hex_key(s.key),
                s.shmid.to_string(),
                s.uid.to_string(),
                mode(s.mode),
                s.size.to_string(),
                s.attached.to_string(),
                or_dash(&|n| n.type_name.clone()),
                or_dash(&|n| n.lock.clone()),
                or_dash(&state),
                or_dash(&creator),
                or_dash(&|n| n.version.to_string()),
                s.verdict.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += text.join("  ").trim_end();
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    if segments.is_empty() {
        out += "(no segments)\n";
    }
    out
}

/// One line about a segment, for `gc` and `rm`.
pub(crate) fn one_line(s: &SegmentInfo) -> String {
    let mut line = format!("{} shmid {} {}", hex_key(s.key), s.shmid, s.verdict);
    if let Some(nc) = &s.neocortex {
        let _ = write!(
            line,
            " `{}` lock {} {} creator pid {}",
            nc.type_name,
            nc.lock,
            nc.state.as_str(),
            creator(nc)
        );
    }
    line
}

fn pids(pids: &[i32]) -> String {
    if pids.is_empty() {
        return "none".into();
    }
    pids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn member(m: &Member) -> String {
    let creator = if m.creator { ", the creator" } else { "" };
    format!("pid {} (slot {}{creator})", m.pid, m.slot)
}

/// Everything known about a segment, for people.
pub(crate) fn details(s: &SegmentInfo) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "segment {} (key {}), shmid {}",
        hex_key(s.key),
        s.key,
        s.shmid
    );
    let _ = writeln!(
        w,
        "  owner uid {} (created by uid {}), mode {}, {} bytes{}",
        s.uid,
        s.creator_uid,
        mode(s.mode),
        s.size,
        if s.pending_removal {
            ", removed (goes when the last process detaches)"
        } else {
            ""
        }
    );
    let attached = s
        .attached_pids
        .as_ref()
        .map(|p| format!(" (pids: {})", pids(p)))
        .unwrap_or_default();
    let _ = writeln!(w, "  attached: {}{attached}", s.attached);
    let _ = writeln!(w, "  verdict: {}: {}", s.verdict, s.reason);
    let Some(nc) = &s.neocortex else {
        let _ = writeln!(w, "  not a neocortex segment this build reads");
        return out;
    };
    let l = &nc.layout;
    let shape = match l.shape {
        Shape::Slice => format!("a slice of {} element(s)", l.len),
        _ => "one value".into(),
    };
    let _ = writeln!(w, "  neocortex: {}, version {}", state(nc), nc.version);
    let _ = writeln!(
        w,
        "  value: `{}`, {shape} of {} bytes, align {}",
        nc.type_name, l.element_size, l.element_align
    );
    let _ = writeln!(
        w,
        "  layout: lock state at {}, value at {}, {} bytes needed",
        l.lock_offset, l.data_offset, l.total_size
    );
    let holder = match nc.holder {
        _ if !nc.lock_known => "not known to this program".to_owned(),
        None => "free".into(),
        Some(-1) => "held (by a process it cannot name)".into(),
        Some(pid) => format!("held by pid {pid}"),
    };
    let _ = writeln!(w, "  lock: {}, {holder}", nc.lock);
    if let Some(pid) = nc.dead_holder {
        let _ = writeln!(
            w,
            "  owner died: pid {pid} died holding the lock; the next guard reports owner_died()"
        );
    }
    let _ = writeln!(w, "  creator: pid {}", creator(nc));
    let members: Vec<String> = nc.members.iter().map(member).collect();
    let _ = writeln!(
        w,
        "  members: {}",
        if members.is_empty() {
            "none".into()
        } else {
            members.join(", ")
        }
    );
    if let (Some(set), Some(slots)) = (nc.members_set, nc.member_slots) {
        let _ = writeln!(
            w,
            "  members set: semid {set}, {slots} slots, {} watcher(s)",
            nc.watchers.unwrap_or(0)
        );
    }
    let _ = writeln!(w, "  semaphore sets: {}", pids(&nc.semaphore_sets));
    out
}

/// A segment as JSON: the fixed fields, then the rest.
pub(crate) fn segment_json(s: &SegmentInfo) -> Value {
    let nc = s.neocortex.as_ref();
    let field = |f: &dyn Fn(&NeocortexInfo) -> Value| nc.map_or(Value::Null, f);
    json!({
        "key": s.key,
        "shmid": s.shmid,
        "uid": s.uid,
        "mode": mode(s.mode),
        "size": s.size,
        "attached": s.attached,
        "neocortex": nc.is_some(),
        "type": field(&|n| json!(n.type_name)),
        "lock": field(&|n| json!(n.lock)),
        "state": field(&|n| json!(n.state.as_str())),
        "creator_pid": field(&|n| json!(n.creator_pid)),
        "creator_alive": field(&|n| json!(n.creator_alive)),
        "owner_died": field(&|n| json!(n.owner_died)),
        "version": field(&|n| json!(n.version)),
        "key_hex": hex_key(s.key),
        "creator_uid": s.creator_uid,
        "pending_removal": s.pending_removal,
        "attached_pids": s.attached_pids,
        "kernel_creator_pid": s.kernel_creator_pid,
        "created": s.created,
        "verdict": s.verdict.as_str(),
        "reason": s.reason,
        "lock_known": field(&|n| json!(n.lock_known)),
        "holder": field(&|n| json!(n.holder)),
        "dead_holder": field(&|n| json!(n.dead_holder)),
        "removed": field(&|n| json!(n.removed)),
        "layout": field(&|n| {
            let l = &n.layout;
            json!({
                "shape": if l.shape == Shape::Slice { "slice" } else { "value" },
                "element_size": l.element_size,
                "element_align": l.element_align,
                "len": l.len,
                "lock_offset": l.lock_offset,
                "data_offset": l.data_offset,
                "total_size": l.total_size,
            })
        }),
        "members": field(&|n| {
            n.members
                .iter()
                .map(|m| json!({"pid": m.pid, "slot": m.slot, "creator": m.creator}))
                .collect()
        }),
        "members_set": field(&|n| json!(n.members_set)),
        "member_slots": field(&|n| json!(n.member_slots)),
        "watchers": field(&|n| json!(n.watchers)),
        "semaphore_sets": field(&|n| json!(n.semaphore_sets)),
    })
}

/// `{"segments": [...]}`.
pub(crate) fn list_json(segments: &[SegmentInfo]) -> Value {
    json!({ "segments": segments.iter().map(segment_json).collect::<Vec<_>>() })
}
