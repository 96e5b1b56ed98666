//! The daemon's memory after a burst.
//!
//! glibc's allocator keeps the pages a burst freed: it returns memory to the
//! system only from the top of each heap, so a few live allocations above
//! megabytes of freed ones pin them all. Measured (docs/benchmarks.md,
//! sessions 6–7): after 10,000 messages the live heap was back to 1.5 MB,
//! yet the process was 13 MiB larger than idle. Three things give it back:
//!
//! - [`keep`] waits for the daemon to go quiet after work, then has SQLite
//!   drop its caches and glibc return every whole free page (`malloc_trim`);
//! - [`tune_allocator`] starts the daemon with two malloc arenas and small
//!   per-thread caches (`GLIBC_TUNABLES`), so the free pages sit together
//!   where the trim finds them instead of pinned by 15 arenas and by chunks
//!   parked in each thread's cache;
//! - the blocking pool is small and its idle threads exit after a second
//!   (`main.rs`), handing their cached chunks back before the trim.

use crate::store::Store;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long the store must see no changes before memory is given back.
pub const QUIET: Duration = Duration::from_secs(2);

/// The glibc malloc settings the daemon runs with, unless the operator set
/// `GLIBC_TUNABLES` (then theirs apply, unchanged):
///
/// - `arena_max=2`: threads that contend for the heap get arenas of their
///   own (up to 8 per core); after a burst there were 15, each keeping its
///   own free and partly used pages for good. Two keep the heap where the
///   trim finds it; one measured the same memory but took a third off a
///   Telegram burst's speed (arena lock contention on two cores).
/// - `tcache_count=2`: each thread parks up to 7 freed chunks per size
///   class (glibc's default) for reuse without a lock; every parked chunk
///   pins its page. With 2 the growth after 20,000 messages was +3.0 MiB
///   (4: +3.5 to +4.0) and a 10,000-message burst ran at 3,510 messages/s
///   (glibc's defaults: 4,288 messages/s, and about +6 MiB even with the trim).
///
/// glibc reads these only when a process starts, hence [`tune_allocator`].
pub const TUNABLES: &str = "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=2";

/// Set in the restarted process's environment by [`tune_allocator`].
pub const TUNED_MARKER: &str = "AGENT_RUNTIME_MALLOC_TUNED";

/// What [`tune_allocator`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tuning {
    /// Running with [`TUNABLES`].
    Tuned,
    /// The operator's own `GLIBC_TUNABLES`, left as set.
    Operator(String),
    /// Could not restart with the settings (why); running with glibc's defaults.
    Failed(String),
    /// Not glibc: nothing to tune.
    NotGlibc,
}

/// Makes the process run with [`TUNABLES`]: when `GLIBC_TUNABLES` is unset,
/// replaces the process image with the same program, arguments and
/// environment plus `GLIBC_TUNABLES` (`execve`: same PID, so supervisors
/// see nothing; about a millisecond). Returns only when no restart was
/// needed or it failed. Call first thing in `main`, before any thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() -> Tuning {
    use std::os::unix::process::CommandExt;
    // glibc cuts GLIBC_TUNABLES short in the environment it hands on, so the
    // restarted process knows itself by a marker instead.
    if std::env::var_os(TUNED_MARKER).is_some() {
        return Tuning::Tuned;
    }
    if let Some(v) = std::env::var_os("GLIBC_TUNABLES") {
        return Tuning::Operator(v.to_string_lossy().into_owned());
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Tuning::Failed(format!("cannot find the running program: {e}")),
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe).arg0(arg0).args(args).env("GLIBC_TUNABLES", TUNABLES).env(TUNED_MARKER, "1").exec();
    Tuning::Failed(format!("cannot restart {} with GLIBC_TUNABLES: {err}", exe.display()))
}

/// Elsewhere (musl, macOS, Windows) there is nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() -> Tuning {
    Tuning::NotGlibc
}

/// A `kB` field of `/proc/self/status` (`VmRSS:`, `RssAnon:`), in KiB;
/// `None` where there is no such file (not Linux).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Returns freed heap pages to the system; true if anything came back.
/// It walks and locks the arenas in turn, so it is called once the daemon is
/// quiet.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    glibc::trim()
}

/// Elsewhere (musl, macOS, Windows) there is no such call; their allocators
/// return memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

/// The crate's only `unsafe` code (`unsafe_code` is denied everywhere else,
/// and allowed in this module alone): `malloc_trim(3)` takes an integer, no
/// pointers, and is MT-safe (glibc serialises it with every other allocator
/// call), so there is no invariant for the caller to keep.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim(3): an integer argument only, MT-safe")]
mod glibc {
    pub(super) fn trim() -> bool {
        // SAFETY: malloc_trim takes a size and has no caller-side invariants.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

/// When to give memory back: once the store's change count has moved and
/// then stood still for the quiet period; once per quiet spell, so an idle
/// daemon is not trimmed over and over.
#[derive(Debug)]
pub struct Quiet {
    quiet: Duration,
    seen: u64,
    since: Instant,
    /// Something changed since the last release.
    pending: bool,
}

impl Quiet {
    /// Starts from the current change count; nothing is due until it moves.
    pub fn new(changes: u64, now: Instant, quiet: Duration) -> Quiet {
        Quiet { quiet, seen: changes, since: now, pending: false }
    }

    /// Feeds one look at the change count; true when a release is due now.
    pub fn observe(&mut self, changes: u64, now: Instant) -> bool {
        if changes != self.seen {
            (self.seen, self.since, self.pending) = (changes, now, true);
            return false;
        }
        if self.pending && now.saturating_duration_since(self.since) >= self.quiet {
            self.pending = false;
            return true;
        }
        false
    }
}

/// Looks at the store's change count every `QUIET / 2` and releases memory
/// when [`Quiet`] says so, until `stop`.
pub async fn keep(store: Store, stop: CancellationToken) {
    let mut quiet = Quiet::new(store.changes(), Instant::now(), QUIET);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(QUIET / 2) => {}
        }
        if quiet.observe(store.changes(), Instant::now()) {
            release(&store).await;
        }
    }
}

/// One release: SQLite first (its freed caches are then trimmed with the rest).
async fn release(store: &Store) {
    let started = Instant::now();
    let readers = match store.release_memory().await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "the store could not release its caches");
            0
        }
    };
    let trimmed = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
    crate::metrics::metrics().memory_release();
    tracing::debug!(readers_closed = readers, trimmed, took_us = started.elapsed().as_micros() as u64, "quiet: memory given back");
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(1);

    #[test]
    fn nothing_is_due_before_anything_changed() {
        let t0 = Instant::now();
        let mut q = Quiet::new(7, t0, Q);
        for s in 0..30 {
            assert!(!q.observe(7, t0 + Duration::from_secs(s)), "an idle start is never trimmed");
        }
    }

    #[test]
    fn due_once_after_changes_stop_for_the_quiet_period() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = Quiet::new(0, t0, Q);
        assert!(!q.observe(5, at(500)), "busy: the count moved");
        assert!(!q.observe(9, at(1_000)), "still busy");
        assert!(!q.observe(9, at(1_500)), "quiet for 0.5 s only");
        assert!(q.observe(9, at(2_000)), "quiet for 1 s: due");
        assert!(!q.observe(9, at(2_500)), "released already in this quiet spell");
        assert!(!q.observe(9, at(60_000)), "and not again while idle");
        assert!(!q.observe(10, at(61_000)), "work again");
        assert!(q.observe(10, at(62_000)), "quiet again: due again");
    }

    #[test]
    fn steady_work_defers_the_release() {
        let t0 = Instant::now();
        let mut q = Quiet::new(0, t0, Q);
        for i in 1..100u64 {
            assert!(!q.observe(i, t0 + Duration::from_millis(500 * i)), "the count moves at every look");
        }
    }

    /// Freed pages below a live allocation stay resident until trimmed;
    /// `trim` hands them back. On a thread of its own (its own arena in
    /// this test process), 16 MiB in 1 KiB blocks, the last one kept.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_returns_pages_freed_below_a_live_allocation() {
        let anon_kib = || status_kib("RssAnon:").expect("RssAnon") as i64;
        let (freed, trimmed, dropped) = std::thread::spawn(move || {
            let mut blocks: Vec<Vec<u8>> = (0..16 * 1024).map(|i| vec![i as u8; 1024]).collect();
            let keep = blocks.pop().expect("last block");
            drop(blocks);
            let before = anon_kib();
            let trimmed = trim();
            let after = anon_kib();
            assert_eq!(keep.len(), 1024);
            (before, trimmed, before - after)
        })
        .join()
        .expect("thread");
        assert!(trimmed, "glibc reported nothing to give back");
        assert!(dropped >= 8 * 1024, "RssAnon fell by {dropped} KiB only (from {freed} KiB)");
    }
}
