//! What Linux's `/proc` says about SysV objects: every segment (`/proc/sysvipc/shm`), every
//! semaphore set (`/proc/sysvipc/sem`), and which processes map a segment
//! (`/proc/<pid>/maps`). Elsewhere there is no such list.
#![cfg_attr(
    not(target_os = "linux"),
    expect(dead_code, reason = "the parsers read Linux's /proc only")
)]

use neocortex_sys::shm::ShmStat;

use crate::error::{CortexError, CortexResult, ErrorKind, OsError};

/// One row of a `/proc/sysvipc/*` table, by column name.
#[derive(Debug)]
pub(super) struct Row<'a> {
    names: &'a [&'a str],
    values: Vec<&'a str>,
}

impl Row<'_> {
    /// The column `name` as a number; `None` when missing or not a number.
    pub(super) fn get<N: std::str::FromStr>(&self, name: &str) -> Option<N> {
        let at = self.names.iter().position(|n| *n == name)?;
        self.values.get(at)?.parse().ok()
    }

    /// The column `name`, an octal number (`perms`).
    fn octal(&self, name: &str) -> Option<u32> {
        let at = self.names.iter().position(|n| *n == name)?;
        u32::from_str_radix(self.values.get(at)?, 8).ok()
    }
}

/// Splits a `/proc/sysvipc/*` table into its column names and its rows (the kernel prints a
/// header line naming the columns, then one line per object).
pub(super) fn table(text: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut lines = text.lines();
    let names = lines
        .next()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let rows = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| !r.is_empty())
        .collect();
    (names, rows)
}

/// Each row of a table as a [`Row`].
pub(super) fn rows<'a>(names: &'a [&'a str], rows: Vec<Vec<&'a str>>) -> Vec<Row<'a>> {
    rows.into_iter()
        .map(|values| Row { names, values })
        .collect()
}

/// The segments listed in the text of `/proc/sysvipc/shm`: key, id and the kernel's record.
/// Rows that do not parse are left out.
pub(super) fn parse_shm(text: &str) -> Vec<(i32, i32, ShmStat)> {
    let (names, raw) = table(text);
    rows(&names, raw)
        .iter()
        .filter_map(|r| {
            let stat = ShmStat {
                size: r.get("size")?,
                attached: r.get("nattch")?,
                cpid: r.get("cpid")?,
                ctime: r.get("ctime")?,
                uid: r.get("uid")?,
                cuid: r.get("cuid")?,
                mode: u16::try_from(r.octal("perms")?).ok()?,
            };
            Some((r.get("key")?, r.get("shmid")?, stat))
        })
        .collect()
}

/// Whether the text of a `/proc/<pid>/maps` maps the SysV segment `shmid` (its lines name
/// `/SYSV<key>` and carry the segment id as the inode).
pub(super) fn maps_segment(maps: &str, shmid: i32) -> bool {
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let inode = fields.nth(4);
        let path = fields.next();
        path.is_some_and(|p| p.starts_with("/SYSV"))
            && inode.and_then(|i| i.parse::<i64>().ok()) == Some(i64::from(shmid))
    })
}

/// Reads a `/proc` file as `op`, mapping a failure to a clean error.
#[cfg(target_os = "linux")]
pub(super) fn read(op: &'static str, path: &'static str) -> CortexResult<String> {
    std::fs::read_to_string(path).map_err(|e| CortexError::clean(op, 0, OsError::from_io(path, &e)))
}

/// The error for a list that this system does not have.
#[cfg_attr(target_os = "linux", expect(dead_code, reason = "used off Linux only"))]
pub(super) fn unsupported(op: &'static str, path: &'static str) -> CortexError {
    CortexError::clean_with_hint(
        op,
        0,
        ErrorKind::Other,
        OsError::new(path, libc::ENOSYS),
        "listing every SysV object needs Linux's /proc/sysvipc; look a segment up by its key \
         instead",
    )
}

/// Every segment in this IPC namespace.
#[cfg(target_os = "linux")]
pub(super) fn segments() -> CortexResult<Vec<(i32, i32, ShmStat)>> {
    read("list segments", "/proc/sysvipc/shm").map(|text| parse_shm(&text))
}

/// Every segment in this IPC namespace (not listable here).
#[cfg(not(target_os = "linux"))]
pub(super) fn segments() -> CortexResult<Vec<(i32, i32, ShmStat)>> {
    Err(unsupported("list segments", "/proc/sysvipc/shm"))
}

/// The kernel's record of segment `id` from `/proc/sysvipc/shm`, for a segment whose
/// `IPC_STAT` this user may not read.
pub(super) fn stat_of(id: i32) -> Option<ShmStat> {
    segments()
        .ok()?
        .into_iter()
        .find_map(|(_, shmid, ds)| (shmid == id).then_some(ds))
}

/// The pids (as this process sees them) of the processes that map segment `shmid` of this
/// IPC namespace, among those whose `/proc/<pid>/maps` this user may read; `None` where
/// `/proc` has no maps.
#[cfg(target_os = "linux")]
pub(super) fn attached_pids(shmid: i32) -> Option<Vec<i32>> {
    // Segment ids are per IPC namespace: a process of another namespace may map a segment
    // with the same id.
    let ipc = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/ipc")).ok();
    let here = ipc("self")?;
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            ipc(&pid.to_string()).as_ref() == Some(&here)
                && std::fs::read_to_string(format!("/proc/{pid}/maps"))
                    .is_ok_and(|maps| maps_segment(&maps, shmid))
        })
        .collect();
    pids.sort_unstable();
    Some(pids)
}

/// Where `/proc` has no maps, nobody is known to be attached.
#[cfg(not(target_os = "linux"))]
pub(super) fn attached_pids(_shmid: i32) -> Option<Vec<i32>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Linux 6.x prints it (columns padded, `perms` in octal).
    const SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
1245184001          3  1600                  4416  4242  4243      2  1000  1000  1000  1000 1700000000 1700000001 1700000002                  8192                     0
         0         65   600                   100   101     0      0     0     0     0     0          0          0 1700000003                     0                     0
garbage line
";

    #[test]
    fn parses_the_segment_table_by_column_name() {
        let rows = parse_shm(SHM);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let (key, id, ds) = rows[0];
        assert_eq!((key, id), (1_245_184_001, 3));
        assert_eq!(
            ds,
            ShmStat {
                size: 4416,
                attached: 2,
                cpid: 4242,
                ctime: 1_700_000_002,
                uid: 1000,
                cuid: 1000,
                mode: 0o1600,
            }
        );
        let (key, id, ds) = rows[1];
        assert_eq!(
            (key, id, ds.mode, ds.size, ds.cpid),
            (0, 65, 0o600, 100, 101)
        );
        assert!(parse_shm("").is_empty());
        assert!(parse_shm("key shmid\n1 2\n").is_empty(), "missing columns");
    }

    #[test]
    fn finds_a_segment_in_a_maps_file_by_its_id() {
        let maps = "\
55d0c0a00000-55d0c0a21000 r-xp 00000000 fd:01 1234 /usr/bin/cat
7f0000000000-7f0000002000 r--s 00000000 00:01 65 /SYSV00000000 (deleted)
7f0000010000-7f0000012000 rw-s 00000000 00:01 3 /SYSV4a3b2c1d
7f0000020000-7f0000021000 rw-p 00000000 00:00 0
";
        assert!(maps_segment(maps, 3));
        assert!(maps_segment(maps, 65));
        assert!(!maps_segment(maps, 1234), "a file, not a segment");
        assert!(!maps_segment(maps, 0));
        assert!(!maps_segment("", 3));
    }

    #[test]
    fn tables_split_into_names_and_rows() {
        let (names, rows) = table("a b\n1 2\n\n3 4\n");
        assert_eq!(names, ["a", "b"]);
        assert_eq!(rows, [["1", "2"], ["3", "4"]]);
        let (names, rows) = table("");
        assert!(names.is_empty() && rows.is_empty());
    }
}
