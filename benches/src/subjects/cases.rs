//! The measured cases.

/// The measured cases, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    /// ns per `read()` of a `u64`, uncontended.
    ReadU64,
    /// ns per `read()` of a 4 KiB value (copied out), uncontended.
    Read4k,
    /// ns per `write()` of a 4 KiB value, uncontended.
    Write4k,
    /// Two processes, one writing and one reading an 8 B value: total ops/s.
    Contended8b,
    /// Two processes, one writing and one reading a 4 KiB value: total ops/s.
    Contended4k,
    /// One writer process and one reader process on an 8 B value, flat out: the reader's
    /// ops/s, and the writer's with the reader and alone.
    Seqlock1w1r,
    /// ns to create a typed segment with its lock and drop (remove) it.
    CreateDrop,
    /// ns to attach to an existing segment and drop (detach) the handle.
    AttachDetach,
    /// ns to fill a 64 MiB value in place through a guard (memcpy for the floor).
    Inplace64m,
    /// ns to copy a 1 MiB `[u8]` slice out of the segment (`read_into`).
    SliceRead1m,
    /// ns from `SIGKILL` of a holder to a blocked waiter holding the lock.
    Takeover,
    /// ns per round trip of a two-process ping-pong through `write` + `wait_for_change`.
    NotifyRoundtrip,
}

impl Case {
    /// Every case, in report order.
    pub const ALL: [Case; 12] = [
        Case::ReadU64,
        Case::Read4k,
        Case::Write4k,
        Case::Contended8b,
        Case::Contended4k,
        Case::Seqlock1w1r,
        Case::CreateDrop,
        Case::AttachDetach,
        Case::Inplace64m,
        Case::SliceRead1m,
        Case::Takeover,
        Case::NotifyRoundtrip,
    ];

    /// The case's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Case::ReadU64 => "uncontended_read_u64",
            Case::Read4k => "uncontended_read_4k",
            Case::Write4k => "uncontended_write_4k",
            Case::Contended8b => "contended_8b",
            Case::Contended4k => "contended_4k",
            Case::Seqlock1w1r => "seqlock_1w1r",
            Case::CreateDrop => "create_drop",
            Case::AttachDetach => "attach_detach",
            Case::Inplace64m => "inplace_write_64m",
            Case::SliceRead1m => "slice_read_1m",
            Case::Takeover => "takeover_after_kill",
            Case::NotifyRoundtrip => "notify_roundtrip",
        }
    }

    /// What one operation is, for the table's heading.
    pub fn describe(self) -> &'static str {
        match self {
            Case::ReadU64 => "time per `read()` of a `u64`, one process, uncontended",
            Case::Read4k => {
                "time per `read()` of a 4 KiB value, copied out of the segment, one process, \
                 uncontended (libc-memcpy: memcpy of 4 KiB out of a SysV segment)"
            }
            Case::Write4k => "time per `write()` of a 4 KiB value, one process, uncontended",
            Case::Contended8b => {
                "two processes on two cores, one `write()`s and one `read()`s an 8 B value \
                 flat out: total ops/s (std-mutex: two threads)"
            }
            Case::Contended4k => {
                "two processes on two cores, one `write()`s and one `read()`s a 4 KiB value \
                 flat out: total ops/s (std-mutex: two threads)"
            }
            Case::Seqlock1w1r => {
                "one writer process `write()`s an 8 B value flat out while one reader process \
                 `read()`s it flat out, on two cores: the reader's ops/s; the note gives the \
                 writer's rate beside the reader and alone (the same writer, forked without a \
                 reader, in the same repetition)"
            }
            Case::CreateDrop => {
                "time to create a `u64` segment with its lock, then drop (remove) it"
            }
            Case::AttachDetach => {
                "time to attach to an existing `u64` segment, then drop (detach) the handle"
            }
            Case::Inplace64m => {
                "time to copy 64 MiB into the value in place through a guard (libc-memcpy: \
                 memcpy into a SysV segment)"
            }
            Case::SliceRead1m => {
                "time to copy a 1 MiB `[u8]` slice out of the segment into a buffer \
                 (`read_into`, under the lock or optimistically; libc-memcpy: memcpy of \
                 1 MiB out of a SysV segment)"
            }
            Case::Takeover => {
                "time from `SIGKILL` of a process holding the lock to another process, \
                 blocked on the lock, holding it (its guard; `write()` returning for \
                 SeqLock); the kill comes 3–5 ms after the waiter fell asleep"
            }
            Case::NotifyRoundtrip => {
                "two processes on two cores ping-pong: one `write()`s, the other wakes from \
                 `wait_for_change` and `write()`s back; time per round trip (floors: the \
                 same with a bare futex word, two eventfds, two pipes)"
            }
        }
    }

    /// Whether the case measures throughput (ops/s, higher is better) rather than time.
    pub fn is_throughput(self) -> bool {
        matches!(
            self,
            Case::Contended8b | Case::Contended4k | Case::Seqlock1w1r
        )
    }

    /// Looks a case up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}
