//! The lock contract: what a lock must do to guard a value in a shared segment, and what
//! `Cortex` gives a lock to do it with.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::error::{CortexError, CortexResult};
use crate::header::Header;
use crate::marker::{combine_tags, tag_of_name, ShmSafe};
use crate::members::{self, MemberTable, Membership, Token};
use crate::mode::Permission;

/// How long an acquire may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Do not wait: fail with [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock).
    Never,
    /// Wait until the deadline, then fail with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    Until {
        /// When to give up.
        deadline: Instant,
        /// The timeout the caller gave, for the error message.
        requested: Duration,
    },
    /// Wait as long as it takes.
    Forever,
}

/// What is left of a [`Wait`] now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remaining {
    /// Do not block.
    NoWait,
    /// Block at most this long (never zero).
    For(Duration),
    /// Block without limit.
    Forever,
    /// The deadline has passed.
    Expired,
}

impl Wait {
    /// A wait of `timeout` from now. A timeout too large for an `Instant` waits forever.
    pub fn timeout(timeout: Duration) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => Self::Until {
                deadline,
                requested: timeout,
            },
            None => Self::Forever,
        }
    }

    /// What is left now; recompute after every interrupted wait.
    pub fn remaining(&self) -> Remaining {
        match *self {
            Self::Never => Remaining::NoWait,
            Self::Forever => Remaining::Forever,
            Self::Until { deadline, .. } => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Remaining::For(left),
                _ => Remaining::Expired,
            },
        }
    }

    /// The error for giving up on a lock: `WouldBlock` for [`Wait::Never`], else `Timeout`.
    pub fn gave_up(&self, key: i32) -> CortexError {
        let after = match *self {
            Self::Never => return CortexError::WouldBlock { key },
            Self::Until { requested, .. } => requested,
            Self::Forever => Duration::MAX,
        };
        CortexError::Timeout {
            key,
            after,
            waiting_for: "the lock",
        }
    }
}

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// From a holder that released it (or nobody held it).
    Released,
    /// Taken over from a holder that died holding it: the value may be half-written.
    /// `Cortex` then reports [`owner_died`](crate::CortexGuard::owner_died) until the value
    /// is repaired.
    FromDeadHolder {
        /// The dead holder's pid, as it saw itself, if known.
        pid: Option<i32>,
    },
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::InPlace {}
    impl Sealed for super::Optimistic {}
}

/// How a lock lets processes reach the value: [`InPlace`] or [`Optimistic`].
pub trait Access: sealed::Sealed + Debug + 'static {
    /// Whether readers copy the value optimistically instead of locking.
    #[doc(hidden)]
    const OPTIMISTIC: bool;
}

/// Readers and writers both lock: guards give `&T` and `&mut T` in place.
#[derive(Debug)]
pub struct InPlace;

/// Only writers lock; readers copy the value word by word with atomic loads and retry when
/// a write overlapped (a sequence lock). The value is only ever touched through atomics, so
/// there are no guards: `read()`, `write()` and `update()` are the ways in.
#[derive(Debug)]
pub struct Optimistic;

impl Access for InPlace {
    const OPTIMISTIC: bool = false;
}

impl Access for Optimistic {
    const OPTIMISTIC: bool = true;
}

/// What a lock gets to work with: the segment's key, this handle's member [`Token`], and a
/// kernel-backed answer to "is the holder with this token still alive?".
///
/// See the [`members` design](crate::Token) for how tokens work.
#[derive(Debug)]
pub struct LockContext<'a> {
    key: i32,
    members: &'a Membership,
    header: &'a Header,
    table: &'a MemberTable,
    /// For the operator's tool, which maps segments read-only: no token, no reaper.
    read_only: bool,
}

impl<'a> LockContext<'a> {
    pub(crate) fn new(
        key: i32,
        members: &'a Membership,
        header: &'a Header,
        table: &'a MemberTable,
    ) -> Self {
        Self {
            key,
            members,
            header,
            table,
            read_only: false,
        }
    }

    /// A context for looking at a segment mapped read-only: [`token`](Self::token) and
    /// [`with_reaper`](Self::with_reaper) fail, since both would write.
    pub(crate) fn read_only(
        key: i32,
        members: &'a Membership,
        header: &'a Header,
        table: &'a MemberTable,
    ) -> Self {
        Self {
            read_only: true,
            ..Self::new(key, members, header, table)
        }
    }

    #[cold]
    fn refuse_writes(&self, what: &str) -> CortexResult<()> {
        Err(CortexError::InvalidInput {
            key: self.key,
            reason: format!(
                "the segment is only being inspected (mapped read-only): a lock may not {what} \
                 from `holder` or `semaphore_sets_in`"
            ),
        })
    }

    /// The segment's key, for error messages.
    #[inline]
    pub fn key(&self) -> i32 {
        self.key
    }

    /// This process's token for the segment, claimed on first use (a forked child claims
    /// its own). It stays alive until the handle is dropped or the process dies.
    ///
    /// # Errors
    ///
    /// `LimitReached` when every member slot is taken; `LockRemoved` when the segment is
    /// being removed; `InvalidInput` when the segment is only being inspected.
    #[inline]
    pub fn token(&self) -> CortexResult<Token> {
        if self.read_only {
            self.refuse_writes("claim a token")?;
        }
        self.members.token(self.key, self.header, self.table)
    }

    /// Whether the handle that holds `token` is alive, asked of the kernel (one system call).
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the segment is being removed.
    pub fn is_alive(&self, token: Token) -> CortexResult<bool> {
        members::is_alive(self.members.set(), token)
            .map_err(|e| members::members_error("check a holder", self.key, e))
    }

    /// The pid of the process that holds `token`, as that process sees itself, if known.
    pub fn pid_of(&self, token: Token) -> Option<i32> {
        self.table.pid_of(token)
    }

    /// Whether the segment is being removed: a lock should then fail with `LockRemoved`.
    #[inline]
    pub fn is_removed(&self) -> bool {
        self.header.is_removed()
    }

    /// Runs `take_over` while holding the segment's reaper lock, so that at most one process
    /// at a time decides to take the lock over from a dead holder. While it runs, a lock
    /// word that names a dead holder can only be changed by `take_over` itself (the dead do
    /// not release), so checking "still the same dead holder?" and then replacing it is free
    /// of races. Waits for another reaper as `wait` says (and at most a second).
    ///
    /// `Ok(None)`: another reaper was busy and the wait ran out.
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the segment is being removed; `InvalidInput` when the segment is
    /// only being inspected.
    pub fn with_reaper<R>(
        &self,
        wait: Wait,
        take_over: impl FnOnce() -> R,
    ) -> CortexResult<Option<R>> {
        if self.read_only {
            self.refuse_writes("take a lock over")?;
        }
        let set = self.members.set();
        let bounded = match wait.remaining() {
            Remaining::NoWait | Remaining::Expired => Wait::Never,
            Remaining::For(left) if left < members::REAPER_WAIT => wait,
            Remaining::For(_) | Remaining::Forever => Wait::timeout(members::REAPER_WAIT),
        };
        let taken = members::take_reaper(set, bounded)
            .map_err(|e| members::members_error("take a lock over", self.key, e))?;
        if !taken {
            return Ok(None);
        }
        let result = take_over();
        if let Err(e) = members::release_reaper(set) {
            tracing::warn!(key = self.key, error = %e, "could not release the reaper lock");
        }
        Ok(Some(result))
    }
}

/// A stand-alone [`LockContext`] for unit tests of a lock, outside any segment: a members
/// set of its own (removed on drop) and a header and member table on the heap.
///
/// Not part of the stable API: for testing locks (neocortex's own, and third-party ones).
#[doc(hidden)]
#[derive(Debug)]
pub struct TestBench {
    key: i32,
    members: Membership,
    header: Box<Header>,
    table: Box<MemberTable>,
}

impl TestBench {
    /// A bench for a lock on `key` (only used in messages).
    ///
    /// # Panics
    ///
    /// When the members set cannot be made (a system limit).
    #[expect(
        clippy::unwrap_used,
        reason = "a test helper: failing loudly is the point"
    )]
    pub fn new(key: i32) -> Self {
        let set = members::create_set(Permission::OwnerOnly, members::DEFAULT_SLOTS).unwrap();
        Self {
            key,
            members: Membership::new(set, members::DEFAULT_SLOTS),
            header: Box::default(),
            table: Box::default(),
        }
    }

    /// The context a lock gets.
    pub fn cx(&self) -> LockContext<'_> {
        LockContext::new(self.key, &self.members, &self.header, &self.table)
    }

    /// The members set's id.
    pub fn members_set(&self) -> i32 {
        self.members.set()
    }

    /// Marks the (pretend) segment removed, as an owner's `remove` does first.
    pub fn mark_removed(&self) {
        self.header.mark_removed();
    }
}

impl Drop for TestBench {
    fn drop(&mut self) {
        let _ = members::remove_set(self.members.set());
    }
}

/// A lock whose state lives in a shared segment and that excludes across processes.
///
/// `Cortex<T, L>` stores an `L::State` in the segment, after the header. The creating
/// process calls [`create`](Self::create) once on a zero-filled state before any other
/// process can see the segment as ready; every other process calls
/// [`attach`](Self::attach) on the ready state. Each handle keeps the returned `Self` (a
/// kernel id, or nothing). Every call gets the handle's [`LockContext`]: the key, the
/// handle's member [`Token`] and a kernel-backed liveness check for tokens, which is how a
/// futex-style lock tells a dead holder from a live one without trusting pids.
///
/// A holder's death is reported in one of two ways. A lock that knows when it took over
/// from a dead holder says so ([`Acquired::FromDeadHolder`], with
/// [`DETECTS_DEAD_HOLDERS`](Self::DETECTS_DEAD_HOLDERS) `true`). Otherwise `Cortex` tracks
/// it: it writes the holder's pid to the header under the exclusive lock and clears it on
/// release, so a lock released by the kernel at a death (SysV `SEM_UNDO`) leaves a pid
/// behind for the next holder to find.
///
/// Removal is seen by every lock through `Cortex`: the owner marks the segment removed
/// before [`destroy`](Self::destroy), and an acquire that finds the mark fails with
/// `LockRemoved`. `destroy` must also wake every waiter of the lock, so nobody sleeps on.
///
/// # Safety
///
/// Implementors promise, and `Cortex` relies on it for the soundness of `&mut T`:
///
/// 1. **Exclusion across processes.** Between a successful [`lock`](Self::lock) and the
///    matching [`unlock`](Self::unlock), no other caller in *any* process attached to the
///    same segment succeeds in `lock` or `lock_shared`. Shared holders exclude exclusive ones
///    the same way. (A lock that parks waiters in a per-process table, like `parking_lot`,
///    does not qualify.) A takeover may only happen from a holder that is dead (decide it
///    with [`LockContext::is_alive`] inside [`LockContext::with_reaper`], or by a kernel
///    mechanism), never from a live one, however long it holds the lock.
/// 2. **Acquire/release ordering.** `lock` synchronises-with the previous `unlock` so the
///    value written under the lock is visible to the next holder.
/// 3. **State in the segment.** All shared lock state is in `Self::State` (or a kernel
///    object whose id is stored there); `State` must be valid when zero-filled before
///    `create` runs, and every field that changes after `create` must be an atomic, since
///    other processes write it while this one holds a `&State`.
/// 4. **No deadlock on holder death.** If a process dies holding the lock, a later `lock`
///    must eventually succeed (a SysV `SEM_UNDO` release, or a takeover by a waiter).
/// 5. **Honest waits.** [`Wait::Never`] never blocks; [`Wait::Until`] gives up after the
///    deadline and never before it (retrying interrupted waits with the remaining time); a
///    removed kernel object is reported as [`CortexError::LockRemoved`].
/// 6. **Honest reports.** `Acquired::FromDeadHolder` only after a takeover from a dead
///    holder; and if `DETECTS_DEAD_HOLDERS` is `true`, after every such takeover.
/// 7. **Looking only reads.** [`holder`](Self::holder) and
///    [`semaphore_sets_in`](Self::semaphore_sets_in) never write `state` (nor anything
///    else in the segment) and change no kernel object: the operator's tool calls them on
///    a segment mapped read-only (`SHM_RDONLY`), where a write would kill the process.
///    (Their context refuses [`LockContext::token`] and [`LockContext::with_reaper`].)
pub unsafe trait CortexSync: Sized + Send + Sync + Debug + 'static {
    /// Options given at creation, e.g. the permission mode.
    type Settings: Default + Debug;

    /// The lock's state inside the segment; zero-filled before [`create`](Self::create).
    type State: ShmSafe;

    /// How the value is reached under this lock: [`InPlace`] (guards) for every lock that
    /// excludes readers too, [`Optimistic`] for a sequence lock whose readers do not lock.
    type Access: Access;

    /// A short stable name, part of the segment's layout fingerprint: attaching with another
    /// lock kind is a `LayoutMismatch`.
    const KIND: &'static str;

    /// Whether [`lock_shared`](Self::lock_shared) lets several holders in at once. When
    /// `false`, shared access falls back to exclusive access.
    const SHARED: bool = false;

    /// Whether [`lock`](Self::lock) reports a takeover from a dead holder itself
    /// ([`Acquired::FromDeadHolder`]); `Cortex` then does not record holders in the header.
    const DETECTS_DEAD_HOLDERS: bool = false;

    /// Whether the lock identifies holders by pid (so every process using it must see the
    /// same pids, i.e. share one pid namespace). For such locks, attach refuses a process in
    /// another pid namespace than the segment's creator, where a live holder would look dead.
    /// Locks built on [`LockContext::token`] need not be pid-based.
    const PID_BASED: bool = false;

    /// The mode for the segment and the lock, from the settings.
    fn permission(settings: &Self::Settings) -> Permission;

    /// Sets up the lock in a zero-filled `state` (creating kernel objects with the mode).
    ///
    /// # Errors
    ///
    /// A system error from creating the lock; it must leave nothing behind
    /// (`CleanSystem`) or name what it left (`DirtySystem`).
    fn create(
        cx: &LockContext<'_>,
        state: &Self::State,
        settings: &Self::Settings,
    ) -> CortexResult<Self>;

    /// Opens the lock of a ready segment.
    ///
    /// # Errors
    ///
    /// The lock's kernel object is gone or not accessible.
    fn attach(cx: &LockContext<'_>, state: &Self::State) -> CortexResult<Self>;

    /// Acquires the lock exclusively, waiting as `wait` says.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, `Timeout`, `LockRemoved`, `PermissionDenied`, `LimitReached`.
    fn lock(&self, cx: &LockContext<'_>, state: &Self::State, wait: Wait)
        -> CortexResult<Acquired>;

    /// Releases an exclusive hold.
    ///
    /// # Errors
    ///
    /// `LockRemoved` when the lock vanished meanwhile.
    ///
    /// # Safety
    ///
    /// The calling process holds the lock exclusively, through this handle.
    unsafe fn unlock(&self, cx: &LockContext<'_>, state: &Self::State) -> CortexResult<()>;

    /// Acquires the lock for shared (read) access. Defaults to [`lock`](Self::lock).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    #[inline]
    fn lock_shared(
        &self,
        cx: &LockContext<'_>,
        state: &Self::State,
        wait: Wait,
    ) -> CortexResult<Acquired> {
        self.lock(cx, state, wait)
    }

    /// Releases a shared hold. Defaults to [`unlock`](Self::unlock).
    ///
    /// # Errors
    ///
    /// As [`unlock`](Self::unlock).
    ///
    /// # Safety
    ///
    /// The calling process holds the lock shared, through this handle.
    #[inline]
    unsafe fn unlock_shared(&self, cx: &LockContext<'_>, state: &Self::State) -> CortexResult<()> {
        // SAFETY: forwarded; when SHARED is false a shared hold is an exclusive one.
        unsafe { self.unlock(cx, state) }
    }

    /// Tears the lock down: removes its kernel objects, if any, and wakes every waiter (who
    /// then sees the segment marked removed). Called by the owner after marking the segment
    /// removed, and when reclaiming a stale segment whose `state` may be half set up.
    ///
    /// # Errors
    ///
    /// The removal failed; the error names what is left.
    fn destroy(cx: &LockContext<'_>, state: &Self::State) -> CortexResult<()>;

    /// The SysV semaphore sets this lock keeps (as `ipcs -s` lists them), for operators and
    /// leak checks. Default: none.
    fn semaphore_sets(&self) -> Vec<i32> {
        Vec::new()
    }

    /// Who holds the lock right now, for the operator's tool: `Some(pid)` (or -1 when held by
    /// an unknown process), `None` when free or when the lock cannot tell. Reads only (point
    /// 7 of the contract).
    fn holder(cx: &LockContext<'_>, state: &Self::State) -> Option<i32> {
        let _ = (cx, state);
        None
    }

    /// The SysV semaphore sets that `state` names (a lock that is a kernel object stores its
    /// id there), read without attaching, for the operator's tool. Reads only (point 7 of
    /// the contract). Default: none.
    fn semaphore_sets_in(cx: &LockContext<'_>, state: &Self::State) -> Vec<i32> {
        let _ = (cx, state);
        Vec::new()
    }
}

/// The fingerprint of a lock kind that the header records: its name, its state type and
/// its access model. Attach compares it, and the operator's tool recognises lock kinds by
/// it.
pub(crate) const fn lock_tag<L: CortexSync>() -> u64 {
    let access = if <L::Access as Access>::OPTIMISTIC {
        tag_of_name("optimistic")
    } else {
        tag_of_name("in-place")
    };
    combine_tags(
        combine_tags(tag_of_name(L::KIND), <L::State as ShmSafe>::TYPE_TAG),
        access,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_shrinks_and_expires() {
        assert_eq!(Wait::Never.remaining(), Remaining::NoWait);
        assert_eq!(Wait::Forever.remaining(), Remaining::Forever);
        assert_eq!(Wait::timeout(Duration::MAX), Wait::Forever);
        let w = Wait::timeout(Duration::from_secs(60));
        match w.remaining() {
            Remaining::For(left) => assert!(left <= Duration::from_secs(60)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Wait::timeout(Duration::ZERO).remaining(),
            Remaining::Expired
        );
        assert!(matches!(
            Wait::Never.gave_up(1),
            CortexError::WouldBlock { .. }
        ));
        let timeout = Wait::timeout(Duration::from_millis(5)).gave_up(1);
        assert!(
            timeout
                .to_string()
                .starts_with("key 1 (0x00000001): waited 5ms for the lock in vain"),
            "{timeout}"
        );
        const { assert!(Optimistic::OPTIMISTIC && !InPlace::OPTIMISTIC) };
    }
}
