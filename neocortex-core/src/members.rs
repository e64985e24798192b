//! Members: the handles using a segment, each known by a token that the kernel takes back
//! when its process dies.
//!
//! Every segment has a private SysV semaphore set (its id is in the header). Semaphores
//! from 2 on are slots (64 by default, set at creation): a handle that needs to be known (to hold a futex lock, to write a
//! `SeqLock` value, to wait for a change) claims a free slot by raising it from 0 to a *tag*
//! (1 to 32767, drawn from a counter in the header) in one atomic `semop` with `SEM_UNDO`.
//! Its token is `(tag << 12) | slot`. The kernel undoes the claim the instant the process
//! dies, however it dies, so
//!
//! > a token is alive exactly while its slot's semaphore holds its tag
//!
//! and that is answered by the kernel (`GETVAL`), not by a pid: it works across pid
//! namespaces, cannot be fooled by a reused pid, and needs no `/proc`. A later claim of the
//! same slot draws another tag, so an old token does not come back to life (a tag repeats
//! only after 32767 claims of one slot, which could only delay the detection of a death,
//! never fake one).
//!
//! Semaphores 0 and 1: the *reaper* (one process at a time may take a lock over from a dead
//! holder, which makes the takeover race-free; held with `SEM_UNDO`, so a reaper that dies
//! frees it) and the *watchers* count (handles that wait for changes, with `SEM_UNDO`, so
//! the count is right even after a watcher is killed).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use neocortex_sys::process::current_pid;
use neocortex_sys::{sem, Errno, SysError, SysResult, IPC_PRIVATE, SEM_UNDO};

use crate::error::{CortexError, CortexResult, ErrorKind, IntoOs};
use crate::header::Header;
use crate::mode::Permission;
use crate::sync::{Remaining, Wait};

/// How many handles can hold a token in one segment at once, unless the creator asked for
/// more. (64 slots keep the set small: systems tuned with `kernel.sem = 250 32000 ...`
/// allow 250 semaphores per set and 32000 in all.)
pub(crate) const DEFAULT_SLOTS: u16 = 64;
/// The most slots a set can have: a token names its slot in 12 bits, and two semaphores
/// come first.
pub(crate) const MAX_SLOTS: u16 = (1 << SLOT_BITS) - 2;
/// The semaphore that one reaper at a time holds.
const REAPER: u16 = 0;
/// The semaphore that counts watcher handles.
const WATCHERS: u16 = 1;
/// The semaphore of slot 0.
const FIRST_SLOT: u16 = 2;
/// Slots whose claimer's pid the member table notes.
const NOTED_SLOTS: usize = 64;
/// Bits of a token that name the slot.
const SLOT_BITS: u32 = 12;
/// The largest tag: `SEMVMX`, the largest value a semaphore holds.
const MAX_TAG: u32 = 32767;

/// This handle's identity among the users of a segment, valid while its process lives.
///
/// A lock stores it in its word to say who holds it, and asks
/// [`LockContext::is_alive`](crate::LockContext::is_alive) whether that holder still lives.
/// Tokens are never 0 and fit in [`Token::BITS`] bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(NonZeroU32);

impl Token {
    /// The number of low bits a token can occupy; the bits above are always 0, for a lock
    /// to use as flags.
    pub const BITS: u32 = SLOT_BITS + 15;

    /// The raw value, to store in a lock word.
    #[inline]
    pub fn raw(self) -> u32 {
        self.0.get()
    }

    /// A token read back from a lock word: `None` for 0 or for bits outside
    /// [`Token::BITS`].
    #[inline]
    pub fn from_raw(raw: u32) -> Option<Self> {
        if raw >> Self::BITS != 0 || raw >> SLOT_BITS == 0 {
            return None;
        }
        NonZeroU32::new(raw).map(Self)
    }

    fn new(slot: u16, tag: u16) -> Self {
        let raw = (u32::from(tag) << SLOT_BITS) | u32::from(slot);
        Self(NonZeroU32::new(raw).unwrap_or(NonZeroU32::MIN))
    }

    /// The slot (a semaphore number in the members set).
    pub(crate) fn slot(self) -> u16 {
        (self.0.get() & ((1 << SLOT_BITS) - 1)) as u16
    }

    /// The tag the slot holds while the token is alive.
    pub(crate) fn tag(self) -> u16 {
        (self.0.get() >> SLOT_BITS) as u16
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(slot {}, tag {})", self.slot(), self.tag())
    }
}

/// The member table in the segment: which pid claimed each of the first 64 slots, and with
/// which token, for messages and the operator's tool. The kernel's semaphores are the truth;
/// this is a note.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct MemberTable {
    entries: [Entry; NOTED_SLOTS],
}

#[repr(C)]
#[derive(Debug, Default)]
struct Entry {
    pid: AtomicI32,
    token: AtomicU32,
}

impl Default for MemberTable {
    fn default() -> Self {
        Self {
            entries: std::array::from_fn(|_| Entry::default()),
        }
    }
}

impl MemberTable {
    /// Bytes of the table in a segment.
    pub(crate) const SIZE: u64 = std::mem::size_of::<Self>() as u64;

    fn note(&self, token: Token, pid: i32) {
        if let Some(e) = self.entries.get(usize::from(token.slot())) {
            e.pid.store(pid, Ordering::Relaxed);
            e.token.store(token.raw(), Ordering::Release);
        }
    }

    /// Every note in the table: the pid that claimed each token, as that process saw
    /// itself. A note outlives its claim (the kernel's slot is the truth: see
    /// [`is_alive`]).
    pub(crate) fn noted(&self) -> impl Iterator<Item = (i32, Token)> + '_ {
        self.entries.iter().filter_map(|e| {
            let token = Token::from_raw(e.token.load(Ordering::Acquire))?;
            let pid = e.pid.load(Ordering::Relaxed);
            (pid != 0).then_some((pid, token))
        })
    }

    /// The pid that claimed `token`, as seen by that process, if the note is still there.
    pub(crate) fn pid_of(&self, token: Token) -> Option<i32> {
        let e = self.entries.get(usize::from(token.slot()))?;
        let pid = e.pid.load(Ordering::Relaxed);
        (e.token.load(Ordering::Acquire) == token.raw() && pid != 0).then_some(pid)
    }
}

/// Creates a members set with `slots` slots and mode `mode`, every semaphore 0.
pub(crate) fn create_set(mode: Permission, slots: u16) -> SysResult<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode.flags();
    let nsems = slots.min(MAX_SLOTS) + FIRST_SLOT;
    let id = sem::semget(IPC_PRIVATE, libc::c_int::from(nsems), flags)?;
    // Linux zero-fills a new set; POSIX leaves the values open, so elsewhere set them.
    #[cfg(not(target_os = "linux"))]
    for num in 0..nsems {
        // SAFETY: the set is private and nobody else knows its id yet, so no holder or undo
        // record can be disturbed.
        if let Err(e) = unsafe { sem::set_value(id, num, 0) } {
            let _ = remove_set(id);
            return Err(e);
        }
    }
    Ok(id)
}

/// Why a members set named by a header is not usable.
#[derive(Debug)]
pub(crate) enum BadSet {
    /// Gone (removed from outside, or a forged id).
    Gone(SysError),
    /// Not a members set of this segment's creator: another size or owner.
    Foreign(String),
    /// Cannot be looked at.
    Other(SysError),
}

impl BadSet {
    pub(crate) fn into_error(self, key: i32) -> CortexError {
        match self {
            Self::Gone(e) => CortexError::lock_removed(key, Some(e.os())),
            Self::Foreign(reason) => CortexError::ForeignSegment { key, reason },
            Self::Other(e) => CortexError::clean("attach members set", key, e.os()),
        }
    }
}

/// Checks that `set` is a members set made by the segment's creator (`creator_uid`);
/// returns its number of slots.
pub(crate) fn check_set(set: i32, creator_uid: u32) -> Result<u16, BadSet> {
    let ds = match sem::stat(set) {
        Ok(ds) => ds,
        Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::EIDRM => {
            return Err(BadSet::Gone(e))
        }
        Err(e) => return Err(BadSet::Other(e)),
    };
    #[expect(
        clippy::useless_conversion,
        reason = "the field's type differs between platforms"
    )]
    let nsems = u64::from(ds.nsems);
    let slots = nsems.saturating_sub(u64::from(FIRST_SLOT));
    if slots == 0 || slots > u64::from(MAX_SLOTS) || ds.cuid != creator_uid {
        return Err(BadSet::Foreign(format!(
            "its header names semaphore set {set}, which is not its members set ({nsems} \
             semaphores, created by uid {})",
            ds.cuid
        )));
    }
    Ok(slots as u16)
}

/// Removes a members set.
pub(crate) fn remove_set(id: i32) -> SysResult<()> {
    // SAFETY: members sets are only removed by the segment's owner tearing the segment down
    // (after marking it removed in the header), by a creation rolling back, or by a
    // reclaimer removing a stale segment nobody is attached to; no lock is implemented by a
    // members set, so no holder can be let in by its removal.
    unsafe { sem::remove(id) }
}

fn op(num: u16, delta: i16, flags: libc::c_int) -> libc::sembuf {
    libc::sembuf {
        sem_num: num,
        sem_op: delta,
        sem_flg: flags as libc::c_short,
    }
}

/// One attempt to claim `slot` with `tag`: it must be 0, and becomes `tag` until released or
/// until this process dies.
fn try_claim(set: i32, slot: u16, tag: u16) -> SysResult<bool> {
    let delta = i16::try_from(tag).unwrap_or(i16::MAX);
    let num = FIRST_SLOT + slot;
    let mut ops = [
        op(num, 0, libc::IPC_NOWAIT),
        op(num, delta, SEM_UNDO | libc::IPC_NOWAIT),
    ];
    loop {
        // SAFETY: the members protocol: a slot goes from 0 to a tag with SEM_UNDO, only when
        // it is 0 (the first op), so no other member's claim is touched.
        match unsafe { sem::semop(set, &mut ops) } {
            Ok(()) => return Ok(true),
            Err(e) if e.errno == Errno::EAGAIN => return Ok(false),
            Err(e) if e.errno == Errno::EINTR => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Claims a free slot of the `slots` in `set` for this process: its token, alive until
/// released or until the process dies. `None` when every slot is taken.
pub(crate) fn claim(
    set: i32,
    slots: u16,
    header: &Header,
    table: &MemberTable,
) -> SysResult<Option<Token>> {
    let number = header.next_claim();
    let tag = (number % MAX_TAG + 1) as u16;
    let pid = current_pid();
    let slots = slots.clamp(1, MAX_SLOTS);
    // A first guess spread by pid, then the slots the kernel says are free.
    let guess =
        ((pid as u32).wrapping_mul(0x9e37_79b9).wrapping_add(number) % u32::from(slots)) as u16;
    if try_claim(set, guess, tag)? {
        let token = Token::new(guess, tag);
        table.note(token, pid);
        return Ok(Some(token));
    }
    let mut values = vec![0u16; usize::from(FIRST_SLOT + slots)];
    sem::get_all(set, &mut values)?;
    for slot in (0..slots).filter(|&s| values[usize::from(FIRST_SLOT + s)] == 0) {
        if try_claim(set, slot, tag)? {
            let token = Token::new(slot, tag);
            table.note(token, pid);
            return Ok(Some(token));
        }
    }
    Ok(None)
}

/// Gives `token` back. Only the process that claimed it may do this.
pub(crate) fn release(set: i32, token: Token) -> SysResult<()> {
    let delta = -i16::try_from(token.tag()).unwrap_or(i16::MAX);
    let mut ops = [op(
        FIRST_SLOT + token.slot(),
        delta,
        SEM_UNDO | libc::IPC_NOWAIT,
    )];
    loop {
        // SAFETY: the members protocol: the claiming process takes its own tag back, with
        // SEM_UNDO like the claim, which cancels its undo record.
        match unsafe { sem::semop(set, &mut ops) } {
            Err(e) if e.errno == Errno::EINTR => continue,
            other => return other,
        }
    }
}

/// Whether `token` is alive: its slot holds its tag.
pub(crate) fn is_alive(set: i32, token: Token) -> SysResult<bool> {
    let value = sem::get_value(set, FIRST_SLOT + token.slot())?;
    Ok(value == libc::c_int::from(token.tag()))
}

/// Takes the reaper semaphore, waiting as `wait` says; `Ok(false)` when it gave up.
pub(crate) fn take_reaper(set: i32, wait: Wait) -> SysResult<bool> {
    let mut ops = [op(REAPER, 0, 0), op(REAPER, 1, SEM_UNDO)];
    loop {
        let result = match wait.remaining() {
            Remaining::NoWait | Remaining::Expired => {
                ops[0].sem_flg = libc::IPC_NOWAIT as libc::c_short;
                // SAFETY: the reaper protocol: 0 is free, 1 is held, taken with SEM_UNDO
                // only when free.
                unsafe { sem::semop(set, &mut ops) }
            }
            // SAFETY: as above.
            Remaining::Forever => unsafe { sem::semop(set, &mut ops) },
            // SAFETY: as above.
            Remaining::For(left) => unsafe { sem::semop_timed(set, &mut ops, Some(left)) },
        };
        match result {
            Ok(()) => return Ok(true),
            Err(e) if e.errno == Errno::EINTR => continue,
            Err(e) if e.errno == Errno::EAGAIN => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Gives the reaper semaphore back.
pub(crate) fn release_reaper(set: i32) -> SysResult<()> {
    let mut ops = [op(REAPER, -1, SEM_UNDO | libc::IPC_NOWAIT)];
    loop {
        // SAFETY: the reaper protocol: the holder gives back its 1, with SEM_UNDO like the
        // take.
        match unsafe { sem::semop(set, &mut ops) } {
            Err(e) if e.errno == Errno::EINTR => continue,
            other => return other,
        }
    }
}

/// Counts this handle among the watchers (`delta` 1) or stops counting it (-1).
fn change_watchers(set: i32, delta: i16) -> SysResult<()> {
    let mut ops = [op(WATCHERS, delta, SEM_UNDO | libc::IPC_NOWAIT)];
    loop {
        // SAFETY: the watchers protocol: each watcher handle adds 1 with SEM_UNDO once and
        // takes it back once; the count guards no memory.
        match unsafe { sem::semop(set, &mut ops) } {
            Err(e) if e.errno == Errno::EINTR => continue,
            other => return other,
        }
    }
}

/// How many watcher handles are alive.
pub(crate) fn watchers(set: i32) -> SysResult<i32> {
    sem::get_value(set, WATCHERS)
}

/// A handle's membership: the members set, and this process's token and watcher
/// registration, each tagged with the pid that made it (so a forked child makes its own).
#[derive(Debug)]
pub(crate) struct Membership {
    set: i32,
    /// Slots in the set.
    slots: u16,
    /// `(pid << 32) | token`, 0 when none.
    token: AtomicU64,
    /// The pid that registered this handle as a watcher, 0 when none.
    watcher: AtomicI32,
    /// Counts wakes that found nobody asleep, to ask the kernel about stale waiter counts
    /// only now and then.
    idle_wakes: AtomicU32,
}

impl Membership {
    pub(crate) fn new(set: i32, slots: u16) -> Self {
        Self {
            set,
            slots,
            token: AtomicU64::new(0),
            watcher: AtomicI32::new(0),
            idle_wakes: AtomicU32::new(0),
        }
    }

    /// The members set's id.
    pub(crate) fn set(&self) -> i32 {
        self.set
    }

    /// Adopts a token claimed for this process elsewhere (the creator's).
    pub(crate) fn adopt(&self, token: Token) {
        let mine = (u64::from(current_pid() as u32) << 32) | u64::from(token.raw());
        self.token.store(mine, Ordering::Relaxed);
    }

    /// This process's token for the segment, claimed now if it has none yet.
    #[inline]
    pub(crate) fn token(
        &self,
        key: i32,
        header: &Header,
        table: &MemberTable,
    ) -> CortexResult<Token> {
        let cached = self.token.load(Ordering::Relaxed);
        // Only valid tokens are ever cached, with the pid that claimed them.
        if cached >> 32 == u64::from(current_pid() as u32) {
            if let Some(raw) = NonZeroU32::new(cached as u32) {
                return Ok(Token(raw));
            }
        }
        self.claim(key, header, table, cached)
    }

    /// Claims a token for this process; `stale` is what the cache held when the caller
    /// found no token of this process in it (nothing, or a parent's). The claim is kept only
    /// if the cache still holds that, else another thread of this process got there first.
    #[cold]
    #[inline(never)]
    fn claim(
        &self,
        key: i32,
        header: &Header,
        table: &MemberTable,
        stale: u64,
    ) -> CortexResult<Token> {
        let pid = u64::from(current_pid() as u32);
        let token = match claim(self.set, self.slots, header, table) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(CortexError::clean_with_hint(
                    "join segment",
                    key,
                    ErrorKind::LimitReached,
                    SysError {
                        call: "semop",
                        errno: Errno::EAGAIN,
                    }
                    .os(),
                    format!(
                        "all {} member slots are taken: at most {} handles can lock or watch \
                         this segment at once; drop unused handles, or create the segment with \
                         CortexBuilder::max_handles",
                        self.slots, self.slots
                    ),
                ))
            }
            Err(e) => return Err(members_error("join segment", key, e)),
        };
        let mine = (pid << 32) | u64::from(token.raw());
        match self
            .token
            .compare_exchange(stale, mine, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Ok(token),
            Err(other) => {
                // Another thread of this process claimed first: use its token, give ours back.
                if let Err(e) = release(self.set, token) {
                    tracing::warn!(key, error = %e, "could not give back a spare member slot");
                }
                match Token::from_raw(other as u32) {
                    Some(theirs) if other >> 32 == pid => Ok(theirs),
                    _ => self.claim(key, header, table, other),
                }
            }
        }
    }

    /// Whether a wake that found nobody asleep should ask the kernel whether the waiter
    /// count is stale: the first time, then every 16th.
    pub(crate) fn should_audit(&self) -> bool {
        self.idle_wakes.fetch_add(1, Ordering::Relaxed) % 16 == 0
    }

    /// Registers this handle as a watcher, once per process.
    pub(crate) fn watch(&self, key: i32) -> CortexResult<()> {
        let pid = current_pid();
        let seen = self.watcher.load(Ordering::Relaxed);
        if seen == pid {
            return Ok(());
        }
        change_watchers(self.set, 1).map_err(|e| members_error("wait for a change", key, e))?;
        if self
            .watcher
            .compare_exchange(seen, pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // Another thread of this process registered meanwhile: one is enough.
            let _ = change_watchers(self.set, -1);
        }
        Ok(())
    }

    /// Gives back what this process claimed through this handle (not what a parent did).
    /// With `keep_token`, the token stays claimed until the process exits: a creator that
    /// detaches keeps saying "my creator lives" for as long as it runs.
    pub(crate) fn leave(&self, key: i32, keep_token: bool) {
        let pid = current_pid();
        let cached = self.token.swap(0, Ordering::AcqRel);
        if !keep_token && cached >> 32 == u64::from(pid as u32) {
            if let Some(token) = Token::from_raw(cached as u32) {
                if let Err(e) = release(self.set, token) {
                    tracing::debug!(key, error = %e, "could not give back a member slot");
                }
            }
        }
        if self.watcher.swap(0, Ordering::AcqRel) == pid {
            if let Err(e) = change_watchers(self.set, -1) {
                tracing::debug!(key, error = %e, "could not stop counting a watcher");
            }
        }
    }
}

/// A members set that is gone means the segment is being (or was) removed.
pub(crate) fn members_error(op: &'static str, key: i32, e: SysError) -> CortexError {
    if e.errno == Errno::EIDRM || e.errno == Errno::EINVAL {
        CortexError::lock_removed(key, Some(e.os()))
    } else {
        CortexError::clean(op, key, e.os())
    }
}

/// How long a reaper may wait for another reaper, at most: a takeover is a few system calls.
pub(crate) const REAPER_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests;
