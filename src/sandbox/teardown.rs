//! The end of an execution, after its answer: reap the killed sandbox, see its process group
//! empty, remove its cgroup, then let go of what it held; first, where executions take turns on
//! shared places (compat on Lambda), the end of its turn, which the execution pays for itself.
//! Before its answer, what its own uid left in `/tmp` (compat as root).

use std::time::{Duration, Instant};

use std::sync::Arc;

use super::cgroup::{ExecCgroup, ProcessList};
use super::compat::leftovers::OwnLeftovers;
use super::compat::scrub::{SharedAreas, Turn};
use super::leader::{kill_group, Leader};
use super::live;
use super::plan::Claim;
use super::settling::Unsettled;

/// How long killed processes get to disappear before that is reported.
const GROUP_EXIT_WAIT: Duration = Duration::from_secs(5);

/// What one execution holds from its plan to its teardown: its cgroup, what keeps its scratch
/// space, its uid, the signal guard and the lease on its template, the places it takes turns
/// on (compat under a shared uid without Landlock), and what its own uid leaves in `/tmp`
/// (compat as root).
#[derive(Default)]
pub(super) struct Held {
    pub cgroup: Option<ExecCgroup>,
    pub keep_alive: Vec<Box<dyn Send + Sync>>,
    pub turns: Option<Arc<SharedAreas>>,
    pub leftovers: Option<OwnLeftovers>,
}

impl Held {
    pub fn new(cgroup: Option<ExecCgroup>, claim: Claim) -> Self {
        Self {
            cgroup,
            keep_alive: claim.keep_alive.into_iter().collect(),
            turns: claim.turns,
            leftovers: claim.leftovers,
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("cgroup", &self.cgroup)
            .field("turns", &self.turns.is_some())
            .finish_non_exhaustive()
    }
}

/// What is left of a sandbox once its execution is over.
pub(super) struct Remains {
    /// Dropped last, once waited for (its registration with it).
    pub leader: Leader,
    pub held: Held,
    pub session: i32,
    pub running: live::Running,
}

/// Ends an execution's turn on the shared places once none of its processes can act any more
/// (nothing can write there), within the execution's CPU limit (see `compat::scrub`). A
/// process that outlives the kill keeps the turn, and the places are unclean, for good.
///
/// The scrub does not wait for the processes to be gone: the script's process, killed, takes
/// milliseconds more to unmap pandas, and on Lambda that time was the whole end of the turn,
/// paid before the next event. Once every thread of the execution is exiting with its address
/// space let go, it runs no code of its own and no same-uid process can read it. So the
/// execution is settled (`unsettled` dropped: on Lambda the runtime may ask for the next event)
/// once the scrub is through. The turn itself is held until the processes are gone and
/// reaped: where executions take turns they share the service's uid, whose RLIMIT_NPROC counts
/// a process until it is reaped, and the next execution's limit was set counting none of this
/// one's.
async fn end_turn(turn: Turn, session: i32, budget: Duration, unsettled: Unsettled) {
    let _ = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        if wait_until_group_has_let_go(session, GROUP_EXIT_WAIT) {
            let let_go = started.elapsed();
            turn.end_and_then(budget, || {
                tracing::debug!(
                    let_go_us = let_go.as_micros() as u64,
                    scrub_us = (started.elapsed() - let_go).as_micros() as u64,
                    "turn ended"
                );
                drop(unsettled);
                if wait_until_group_is_gone(session, GROUP_EXIT_WAIT) {
                    reap_group(session, GROUP_EXIT_WAIT);
                } else {
                    // They can no longer act, but still count against the shared uid's
                    // process limit: the next execution may find it short.
                    tracing::warn!(
                        group = session,
                        "processes of an execution are still exiting as the next turn starts"
                    );
                }
            });
        } else {
            tracing::error!(
                group = session,
                "a process of an execution survived its kill: the shared places stay unclean"
            );
            turn.abandon();
        }
    })
    .await;
}

/// After the answer, where executions take turns: the sandbox's leader waited for, then the
/// turn ended (see [`end_turn`]). Bounded: a process that survives the kill leaves the places
/// unclean rather than holding this up (the teardown after it waits for such a process).
pub(super) async fn end_turn_after_answer(
    remains: &mut Remains,
    turn: Turn,
    budget: Duration,
    unsettled: Unsettled,
) {
    let _ = remains.leader.wait().await;
    end_turn(turn, remains.session, budget, unsettled).await;
}

/// Reaps the orphaned zombies of a group whose processes are all dead, waiting up to `wait`
/// for the last of them to be reparented here.
fn reap_group(group: i32, wait: Duration) {
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    while group > 0 && super::procfs::group_has_members(group) {
        if super::reaper::reap_orphans() == 0 {
            if started.elapsed() > wait {
                tracing::warn!(group, "zombies of an execution were not reaped in time");
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Removes what the execution's own uid left in `/tmp` once none of its processes can act (each
/// has let go: see [`end_turn`]), within the execution's CPU limit (see `compat::leftovers`).
/// What cannot be removed in time keeps the uid: teardown hands it on only once the leftovers
/// are gone.
pub(super) async fn remove_leftovers(held: &mut Held, session: i32, budget: Duration) {
    let Some(leftovers) = held.leftovers.take() else {
        return;
    };
    if leftovers.untouched() {
        // Nothing added there: the answer need not wait for the processes' exit. The teardown
        // looks again once they are gone, as an entry made by a syscall the kill cut short
        // would show then.
        held.leftovers = Some(leftovers);
        return;
    }
    let members = Members::of(held, session);
    let unfinished = tokio::task::spawn_blocking(move || {
        let done = members.wait_until_let_go(GROUP_EXIT_WAIT) && leftovers.remove(budget);
        (!done).then_some(leftovers)
    })
    .await
    .unwrap_or_default();
    held.leftovers = unfinished;
}

/// After the answer: reap the killed sandbox, see its process group empty, then remove its
/// cgroup, scratch space and hold on its uid, and forget its pid, now that tokio has waited
/// for it. None of that is let go while a process of the execution still exists: a uid handed
/// on would give the next execution a neighbour.
pub(super) async fn teardown(mut remains: Remains) {
    let _ = remains.leader.wait().await;
    // Every process of the execution started in its cgroup and cannot leave it: once the
    // cgroup is gone, none is alive, and the group needs no look (a scan of /proc).
    let mut emptied = false;
    if let Some(cgroup) = remains.held.cgroup.take() {
        emptied = cgroup.destroy().await;
    }
    let _ = tokio::task::spawn_blocking(move || {
        if !emptied && !wait_until_group_is_gone(remains.session, GROUP_EXIT_WAIT) {
            tracing::error!(
                group = remains.session,
                "processes of a sandbox survived their execution's kill; its uid and scratch \
                 space are held until they are gone"
            );
            wait_until_group_is_gone(remains.session, Duration::MAX);
        }
        // Leftovers go before the uid does: those the execution could not pay for in its
        // budget, and any an answer sent without waiting for its processes' exit did not see.
        let leftovers = remains.held.leftovers.take();
        if let Some(leftovers) = leftovers.filter(|leftovers| !leftovers.untouched()) {
            while !leftovers.remove(Duration::from_secs(30)) {
                tracing::warn!(
                    uid = leftovers.uid,
                    "still removing an execution's leftovers"
                );
            }
        }
        // In this order: scratch space and uid go first, and the pid last.
        drop(remains.held);
        drop(remains.running);
        drop(remains.leader);
    })
    .await;
}

/// How to tell an execution's processes have all let go: its cgroup's process list where it
/// has a cgroup (every process starts in it and cannot leave, and is listed until all its
/// threads are exiting), which costs one read, else a look at its process group.
struct Members {
    group: i32,
    cgroup: Option<ProcessList>,
}

impl Members {
    fn of(held: &Held, group: i32) -> Self {
        Self {
            group,
            cgroup: held.cgroup.as_ref().map(ExecCgroup::process_list),
        }
    }

    /// As [`wait_until_group_has_let_go`], asking the cgroup where there is one: it lists
    /// every process of the execution, so one look is enough.
    fn wait_until_let_go(&self, wait: Duration) -> bool {
        let Some(list) = &self.cgroup else {
            return wait_until_group_has_let_go(self.group, wait);
        };
        let still_acting = || {
            let pids = list.pids().into_iter();
            pids.filter(|pid| !super::procfs::has_let_go(*pid))
                .collect()
        };
        let looks = Looks::new(self.group, LET_GO_PAUSE, 1);
        looks.until_none_left(wait, still_acting, sleep_for_pids)
    }
}

/// The first pause between looks for processes letting go: it comes microseconds after a kill
/// is taken, and no fd tells of it.
const LET_GO_PAUSE: Duration = Duration::from_micros(50);

/// Waits up to `wait` until every process left in the sandbox's process group has let go (see
/// `procfs::has_let_go`), killing again as [`wait_until_group_is_gone`] does; whether they
/// have.
fn wait_until_group_has_let_go(group: i32, wait: Duration) -> bool {
    let still_acting = || {
        let members = super::procfs::live_members(group).into_iter();
        members
            .filter(|pid| !super::procfs::has_let_go(*pid))
            .collect()
    };
    let looks = Looks::new(group, LET_GO_PAUSE, 2);
    looks.until_none_left(wait, still_acting, sleep_for_pids)
}

/// Waits up to `wait` until no live process is left in the sandbox's process group (killing
/// again, in case one was being forked when the first kill came); whether none is left. Each
/// look waits on the members' exits themselves, not a fixed sleep: on Lambda the answer waited
/// for the script's process to finish exiting (a few milliseconds with pandas mapped), and
/// sleeps of 1, 2 and 4 ms found a 3 ms exit 7 ms after the fact.
fn wait_until_group_is_gone(group: i32, wait: Duration) -> bool {
    let still_live = || super::procfs::live_members(group);
    let looks = Looks::new(group, Duration::from_millis(1), 2);
    looks.until_none_left(wait, still_live, super::exits::wait_for_any)
}

fn sleep_for_pids(_: &[i32], pause: Duration) {
    std::thread::sleep(pause);
}

/// Repeated looks at a sandbox's processes, the group killed again between them (in case one
/// was being forked when the first kill came), with pauses doubling from `first_pause`. A look
/// below the service can miss a member (see `procfs::live_members`): there, `agreeing` looks
/// in a row must find none.
struct Looks {
    group: i32,
    first_pause: Duration,
    agreeing: u32,
}

impl Looks {
    fn new(group: i32, first_pause: Duration, agreeing: u32) -> Self {
        Self {
            group,
            first_pause,
            agreeing,
        }
    }

    /// Looks until `look` finds no process still to wait for, pausing with `pause` (given the
    /// processes found) between looks; whether that came within `wait`.
    fn until_none_left(
        self,
        wait: Duration,
        mut look: impl FnMut() -> Vec<i32>,
        pause: impl Fn(&[i32], Duration),
    ) -> bool {
        if self.group <= 0 {
            return true;
        }
        let started = Instant::now();
        let mut next_pause = self.first_pause;
        let mut empty_in_a_row = 0;
        loop {
            let left = look();
            empty_in_a_row = if left.is_empty() {
                empty_in_a_row + 1
            } else {
                0
            };
            if empty_in_a_row >= self.agreeing {
                return true;
            }
            if started.elapsed() > wait {
                return false;
            }
            if !left.is_empty() {
                kill_group(self.group);
                pause(&left, next_pause);
                next_pause = (next_pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}
