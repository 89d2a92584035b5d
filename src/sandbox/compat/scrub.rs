//! Where compat cannot give each execution a private place to write (no mount namespace, no
//! Landlock, the script under the service's own uid: AWS Lambda), nothing may outlive an
//! execution there either. The service takes one turn per execution on the places the uid can
//! write (`/tmp` on Lambda, and `/var/tmp`, `/dev/shm` wherever they are writable), and at the
//! end of each execution, once every process of the sandbox is gone, empties them of everything
//! that was not there when the service started.
//!
//! Whoever made the mess pays for it: the scrub runs as the end of the turn of the execution
//! that wrote the files, after its answer and before the next turn (on Lambda, before the
//! runtime asks for the next event: `sandbox::settling`), within a budget of time and entries
//! ([`Budget`], checked at every entry). The time a script can spend writing entries is bounded
//! by its CPU limit, and removing one costs no more than making one, so the execution's CPU
//! limit is its scrub's budget. A scrub that cannot finish in it leaves the places *unclean*: no
//! turn is given until a background scrub has emptied them (callers are told to retry
//! meanwhile), and on Lambda, where nothing runs between invocations, the runtime exits (see
//! [`SharedAreas::is_clean`]). Lambda then starts the runtime again in the same environment
//! with `/tmp` as it was, as after a crash or a timeout, so a service started there removes its
//! uid's files from the places before anything runs ([`AtStart`]). The next caller never waits
//! for a previous caller's files.
//! How the tree is taken apart is [`super::scrub_fs`]'s.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::ctime_mark::CtimeMark;
use super::leftovers::OwnLeftovers;
use super::scrub_fs::{self, Entry};

/// The places a script's uid can write that outlive it, where they exist and are writable.
const CANDIDATES: [&str; 4] = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];
/// What the scrub at the start of a turn may take: only something other than an execution
/// could have written since the last one ended, which costs a listing.
const TURN_START_BUDGET: Duration = Duration::from_millis(50);
/// The most entries one scrub handles, whatever its time allows.
const MAX_SCRUBBED_ENTRIES: usize = 8_000_000;
/// A background scrub of unclean places works in slices this long, logging between them.
const BACKGROUND_SLICE: Duration = Duration::from_secs(5);

/// Whether the shared places may hold what an earlier service's executions left, when this
/// service starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtStart {
    /// They may not: what they hold is the host's, and stays (a container's first start, a
    /// developer's machine).
    HostsOnly,
    /// They may: on AWS Lambda a crash, a timeout or the runtime's own exit (after a scrub that
    /// could not finish) makes Lambda start the runtime again in the same environment, with
    /// `/tmp` as it was left. So what this uid owns there is removed before anything runs;
    /// what another uid owns stays (this uid could not remove it from a sticky `/tmp` anyway).
    EarlierRunsPossible,
}

/// The shared places and the turn every execution takes on them.
#[derive(Debug)]
pub struct SharedAreas {
    areas: Vec<Area>,
    turn: Arc<Mutex<()>>,
    /// Names for directories moved up while flattening a tree.
    moved: AtomicU64,
    /// Set while the places hold what a scrub could not remove within its budget.
    unclean: AtomicBool,
}

#[derive(Debug)]
struct Area {
    path: PathBuf,
    /// Held open for the life of the service: one `getdents64` away from a listing.
    directory: OwnedFd,
    /// Name and inode of what was there at start: not the scripts', so never removed. (The
    /// name too: a script may delete such an entry and get its inode number reused.)
    found_at_start: HashSet<(CString, u64)>,
    /// The directory's change time when a scrub last found it holding nothing to remove.
    clean: std::sync::Mutex<Option<CtimeMark>>,
}

/// One execution's turn: held from hand-over until its leftovers are gone.
#[derive(Debug)]
pub struct Turn {
    areas: Arc<SharedAreas>,
    guard: Option<OwnedMutexGuard<()>>,
}

/// The shared places are not clean: no execution may start on them now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unclean;

/// How much one scrub may do: time, then entries, checked at every entry.
#[derive(Debug)]
pub struct Budget {
    deadline: Instant,
    entries_left: usize,
}

impl Budget {
    pub fn new(time: Duration) -> Self {
        Self {
            deadline: Instant::now() + time,
            entries_left: MAX_SCRUBBED_ENTRIES,
        }
    }

    /// Spends `entries`; false once the time or the entries are used up.
    fn spend(&mut self, entries: usize) -> bool {
        self.entries_left = self.entries_left.saturating_sub(entries);
        self.entries_left > 0 && Instant::now() < self.deadline
    }

    fn entries_left(&self) -> usize {
        self.entries_left
    }
}

/// How a scrub ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scrubbed {
    /// Nothing of the executions is left (or only what cannot be removed at all).
    Clean { removed: usize },
    /// The budget ran out first.
    Unfinished { removed: usize },
}

impl SharedAreas {
    /// Records what the writable places hold now, before any script ran; first, where
    /// `at_start` says earlier runs may have left files, removes this uid's.
    pub fn discover(at_start: AtStart) -> Self {
        let mut paths: Vec<PathBuf> = CANDIDATES.iter().map(PathBuf::from).collect();
        paths.push(std::env::temp_dir());
        let mut areas: Vec<Area> = Vec::new();
        for path in paths {
            let Ok(path) = path.canonicalize() else {
                continue;
            };
            if areas.iter().any(|area| area.path == path) || !writable(&path) {
                continue;
            }
            if at_start == AtStart::EarlierRunsPossible {
                remove_own_leftovers(&path);
            }
            // The working directory where executions take turns: the harness makes `outputs/` there.
            let outputs = (path == Path::new(super::SHARED_TMP)).then(|| with_outputs_dir(&path));
            areas.extend(Area::open(path));
            areas.extend(outputs.flatten().and_then(Area::open));
        }
        Self::of(areas)
    }

    fn of(areas: Vec<Area>) -> Self {
        Self {
            areas,
            turn: Arc::new(Mutex::new(())),
            moved: AtomicU64::new(0),
            unclean: AtomicBool::new(false),
        }
    }

    pub fn paths(&self) -> Vec<&Path> {
        self.areas.iter().map(|area| area.path.as_path()).collect()
    }

    /// Whether executions may take turns here; false while a scrub could not finish (then the
    /// places hold leftovers, and on Lambda the environment should be replaced).
    pub fn is_clean(&self) -> bool {
        !self.unclean.load(Ordering::Acquire)
    }

    /// Waits for the previous execution's turn, then holds the places for this one, emptied of
    /// whatever appeared since (written by anything but an execution, which would have held a
    /// turn). Refused at once while the places are unclean.
    pub async fn take_turn(self: &Arc<Self>) -> Result<Turn, Unclean> {
        if !self.is_clean() {
            return Err(Unclean);
        }
        let guard = Arc::clone(&self.turn).lock_owned().await;
        if !self.is_clean() {
            return Err(Unclean);
        }
        let mut turn = Turn {
            areas: Arc::clone(self),
            guard: Some(guard),
        };
        match self.scrub(&mut Budget::new(TURN_START_BUDGET)) {
            Scrubbed::Clean { .. } => Ok(turn),
            Scrubbed::Unfinished { .. } => {
                turn.finish_in_background();
                Err(Unclean)
            }
        }
    }

    /// Removes everything that was not there at start, within `budget`.
    pub fn scrub(&self, budget: &mut Budget) -> Scrubbed {
        let mut removed = 0;
        for area in &self.areas {
            let (count, finished) = self.scrub_area(area, budget);
            removed += count;
            if !finished {
                return Scrubbed::Unfinished { removed };
            }
        }
        Scrubbed::Clean { removed }
    }

    /// Passes over one area until one finds nothing to remove; each removes files and empty
    /// directories and empties the others one level down into the top level. Returns how many
    /// entries it handled and whether it finished within the budget.
    fn scrub_area(&self, area: &Area, budget: &mut Budget) -> (usize, bool) {
        let top = area.directory.as_raw_fd();
        if area.unchanged_since_clean() {
            return (0, true);
        }
        let mut handled = 0;
        loop {
            // Read before the listing: a change after it shows either in the listing or in a
            // change time other than this one.
            let mark = CtimeMark::of_fd(top);
            let mut progress = false;
            let mut leftovers = false;
            let mut within_budget = true;
            scrub_fs::for_each_entry(top, |entry| {
                if area.was_there(&entry) {
                    return true;
                }
                leftovers = true;
                let done = self.remove_top_level(top, &entry, budget);
                handled += done;
                progress |= done > 0;
                within_budget = budget.spend(done.max(1));
                within_budget
            });
            if !within_budget {
                return (handled, false);
            }
            if !leftovers {
                area.mark_clean(mark);
                return (handled, true);
            }
            if !progress {
                tracing::warn!(area = %area.path.display(), "entries left that cannot be removed");
                return (handled, true);
            }
        }
    }

    /// Removes one top-level entry, or empties it when it is a directory; how many entries
    /// that handled.
    fn remove_top_level(&self, top: i32, entry: &Entry, budget: &Budget) -> usize {
        if scrub_fs::remove_entry(top, &entry.name) {
            return 1;
        }
        if !entry.may_be_directory() {
            return 0;
        }
        let mut fresh_name = || self.fresh_name();
        let allowed = budget.entries_left();
        let emptied = scrub_fs::empty_directory(top, &entry.name, top, allowed, &mut fresh_name);
        if emptied.complete && scrub_fs::remove_entry(top, &entry.name) {
            return emptied.handled + 1;
        }
        emptied.handled
    }

    fn fresh_name(&self) -> CString {
        let id = self.moved.fetch_add(1, Ordering::Relaxed);
        CString::new(format!(
            ".python-executor-scrub-{}-{id}",
            std::process::id()
        ))
        .unwrap_or_default()
    }
}

impl Area {
    fn open(path: PathBuf) -> Option<Self> {
        let name = CString::new(path.as_os_str().as_bytes()).ok()?;
        let directory = scrub_fs::open_directory(libc::AT_FDCWD, &name)?;
        let mut found_at_start = HashSet::new();
        scrub_fs::for_each_entry(directory.as_raw_fd(), |entry| {
            found_at_start.insert((entry.name, entry.inode));
            true
        });
        Some(Self {
            path,
            directory,
            found_at_start,
            clean: std::sync::Mutex::new(None),
        })
    }

    fn mark_clean(&self, mark: Option<CtimeMark>) {
        *self.clean.lock().unwrap_or_else(PoisonError::into_inner) = mark;
    }

    /// Whether the directory is as a scrub last left it, clean, by a mark that can be trusted.
    fn unchanged_since_clean(&self) -> bool {
        let marked = *self.clean.lock().unwrap_or_else(PoisonError::into_inner);
        marked
            .is_some_and(|marked| marked.unchanged_at(CtimeMark::of_fd(self.directory.as_raw_fd())))
    }

    fn was_there(&self, entry: &Entry) -> bool {
        // A set of a few names: the lookup clones nothing but this entry's key.
        self.found_at_start
            .contains(&(entry.name.clone(), entry.inode))
    }
}

impl Turn {
    /// Ends the turn within `budget` (the execution's own time): empties the shared places and
    /// lets the next execution have them. When the budget runs out first, the places are marked
    /// unclean and a background scrub finishes them, still holding the turn.
    pub fn end(self, budget: Duration) -> Scrubbed {
        self.end_and_then(budget, || {})
    }

    /// As [`Turn::end`], with the turn held until `then` has run once the places are clean:
    /// the next execution waits for it too.
    pub fn end_and_then(mut self, budget: Duration, then: impl FnOnce()) -> Scrubbed {
        let scrubbed = self.areas.scrub(&mut Budget::new(budget));
        match scrubbed {
            Scrubbed::Clean { removed } => {
                tracing::debug!(removed, "shared places emptied after the execution");
                then();
                self.guard = None;
            }
            Scrubbed::Unfinished { removed } => {
                tracing::warn!(
                    removed,
                    ?budget,
                    "an execution left more in the shared places than its scrub could remove \
                     in its budget: no execution runs until they are empty"
                );
                self.finish_in_background();
            }
        }
        scrubbed
    }

    /// The places stay unclean, and the turn held, until a scrub without a budget is through.
    fn finish_in_background(&mut self) {
        self.areas.unclean.store(true, Ordering::Release);
        let areas = Arc::clone(&self.areas);
        let guard = self.guard.take();
        std::thread::spawn(move || {
            let mut removed = 0;
            while let Scrubbed::Unfinished { removed: more } =
                areas.scrub(&mut Budget::new(BACKGROUND_SLICE))
            {
                removed += more;
                tracing::info!(removed, "still emptying the shared places");
            }
            areas.unclean.store(false, Ordering::Release);
            tracing::info!("the shared places are empty again");
            drop(guard);
        });
    }

    /// Marks the places unclean and holds the turn for good: a process of the execution could
    /// not be killed, and might still write there. (The service on Lambda is then replaced.)
    pub fn abandon(mut self) {
        self.areas.unclean.store(true, Ordering::Release);
        std::mem::forget(self.guard.take());
    }
}

impl Drop for Turn {
    /// A turn dropped without [`Turn::end`] (its execution's task failed): emptied with the
    /// default budget all the same.
    fn drop(&mut self) {
        if self.guard.is_some() {
            let turn = Turn {
                areas: Arc::clone(&self.areas),
                guard: self.guard.take(),
            };
            turn.end(Duration::from_secs(10));
        }
    }
}

/// Empties `path` of everything this uid owns, however many slices that takes: at a start
/// where earlier executions may have left files there ([`AtStart::EarlierRunsPossible`]).
/// What another uid owns stays.
fn remove_own_leftovers(path: &Path) {
    let leftovers = OwnLeftovers {
        dir: path.to_path_buf(),
        // SAFETY: geteuid cannot fail.
        uid: unsafe { libc::geteuid() },
        at_hand_over: None,
    };
    // Each slice's removals stand, so a start cut short (Lambda's init has 10 s) goes on from
    // where it was at the next.
    while !leftovers.remove(BACKGROUND_SLICE) {
        tracing::info!(place = %path.display(), "removing earlier runs' leftovers");
    }
}

/// Makes `outputs/` in the shared working directory once, before the directory's listing at
/// start, so the harness finds it there: made anew by every execution, it moved the
/// directory's change time every time, and every scrub listed the whole directory. Its
/// contents are an area of their own: what executions put there is removed, what was there at
/// start stays. Its path, where it is (or now is) a directory this uid can write.
fn with_outputs_dir(workdir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let outputs = workdir.join("outputs");
    let _ = std::fs::DirBuilder::new().mode(0o755).create(&outputs);
    // Never a link: the area is opened without following one.
    let is_directory = std::fs::symlink_metadata(&outputs).is_ok_and(|meta| meta.is_dir());
    (is_directory && writable(&outputs)).then_some(outputs)
}

fn writable(path: &Path) -> bool {
    let Ok(path) = CString::new(OsString::from(path).as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a NUL-terminated path. It also answers EROFS on a read-only mount.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests;
