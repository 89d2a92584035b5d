//! Reading other processes' state from `/proc/<pid>/stat`: who their parent is (the orphan
//! reaper), which process group they are in (compat's signal guard, the end-of-execution check
//! that nothing of a sandbox is left).

/// The fields of `/proc/<pid>/stat` the service reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// R, S, D, Z (zombie), T...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// CPU time of the process and of its children it has waited for, in clock ticks.
    pub cpu_ticks: u64,
    /// CPU time of the process alone, in clock ticks.
    pub own_cpu_ticks: u64,
    /// The kernel's flags for the task (`PF_*`); 0 where the line stops short of them.
    pub flags: u64,
    /// The size of its address space; 0 once it has let go of it (exiting), `None` where the
    /// line stops short of it.
    pub vsize: Option<u64>,
}

impl Stat {
    /// The stat of `pid` (a process or any of its threads), if it exists.
    pub fn of(pid: i32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    /// Parses a stat line: `pid (comm) state ppid pgrp ...`. The command name may itself
    /// contain spaces and parentheses, so fields are counted from the last ')'.
    pub fn parse(text: &str) -> Option<Self> {
        let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
        // Counted from the state, field 3 of proc(5): utime, stime, cutime, cstime are 14-17.
        let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
        let cpu_ticks = (11..=14).map(number).sum::<Option<u64>>().unwrap_or(0);
        let own_cpu_ticks = (11..=12).map(number).sum::<Option<u64>>().unwrap_or(0);
        Some(Self {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            cpu_ticks,
            own_cpu_ticks,
            // Fields 9 and 23 of proc(5).
            flags: number(6).unwrap_or(0),
            vsize: number(20),
        })
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }

    /// Whether the task can no longer run code of its own nor be read through /proc: a
    /// zombie, or exiting (`PF_EXITING`, which it never returns to user space from) with its
    /// address space already let go, whose teardown is only the kernel's work from there.
    pub fn has_let_go(&self) -> bool {
        const PF_EXITING: u64 = 0x4;
        self.is_zombie() || (self.flags & PF_EXITING != 0 && self.vsize == Some(0))
    }
}

/// Whether every thread of `pid` has let go (see [`Stat::has_let_go`]); a process already gone
/// has. What is left of it is its address space's teardown, milliseconds with pandas mapped,
/// which nothing needs to wait for but the hand-on of what the process's existence holds.
pub fn has_let_go(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.filter_map(Result::ok).all(|task| {
        match std::fs::read_to_string(task.path().join("stat")) {
            Ok(text) => Stat::parse(&text).is_some_and(|stat| stat.has_let_go()),
            // A thread that has gone since the listing.
            Err(_) => !task.path().exists(),
        }
    })
}

/// Resident memory a process does not share with files: its anonymous and shared-memory pages,
/// from `/proc/<pid>/status` (world-readable, even for an undumpable process).
pub fn private_resident_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Some((kib("RssAnon:") + kib("RssShmem:")) * 1024)
}

/// Whether `pid` ignores SIGCHLD (then the kernel reaps its children itself, and their CPU
/// time is added to no one's), from the `SigIgn` mask of `/proc/<pid>/status`.
pub fn ignores_sigchld(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGCHLD - 1)) != 0)
}

/// Clock ticks per second, for `Stat::cpu_ticks`.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf with a constant name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Every pid in /proc (processes, not threads).
pub fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// The live (non-zombie) processes still in process group `pgrp`: none, without a look, when
/// the group has no member at all; else those found below this service, which reaps every
/// orphan its sandboxes leave, so they never leave its tree (a scan of /proc where it does
/// not, or the kernel lists no children: a few hundred file reads on a busy host).
///
/// One look can miss a member whose parent dies during it: the orphan moves up to a list the
/// look has already read. Callers waiting for a group to end believe a look only when the one
/// after it agrees.
pub fn live_members(pgrp: i32) -> Vec<i32> {
    if !group_exists(pgrp) {
        return Vec::new();
    }
    let below = if reaps_orphans() {
        group_below(std::process::id() as i32, pgrp)
    } else {
        None
    };
    let members = below.unwrap_or_else(|| {
        pids()
            .into_iter()
            .filter_map(|pid| Some((pid, Stat::of(pid)?)))
            .filter(|(_, stat)| stat.pgrp == pgrp)
            .collect()
    });
    members
        .into_iter()
        .filter(|(_, stat)| !stat.is_zombie())
        .map(|(pid, _)| pid)
        .collect()
}

/// The processes of group `pgrp` below `root`, from the kernel's children lists; `None` where
/// it has none. Only a member's children are read: a process of the group is forked by one,
/// or adopted, when its parent dies, by the nearest reaper above it, a member or `root`.
fn group_below(root: i32, pgrp: i32) -> Option<Vec<(i32, Stat)>> {
    let mut unread = children(root)?;
    let mut members = Vec::new();
    while let Some(pid) = unread.pop() {
        let Some(stat) = Stat::of(pid) else { continue };
        if stat.pgrp != pgrp {
            continue;
        }
        unread.extend(children_unless_gone(pid)?);
        members.push((pid, stat));
    }
    Some(members)
}

/// As [`children`], with none for a process gone since its parent's list was read (its
/// children, if any, moved up).
fn children_unless_gone(pid: i32) -> Option<Vec<i32>> {
    match children(pid) {
        Some(children) => Some(children),
        None if !std::path::Path::new(&format!("/proc/{pid}")).exists() => Some(Vec::new()),
        None => None,
    }
}

/// Every process below `root`, from the kernel's children lists; `None` where it has none.
pub fn descendants(root: i32) -> Option<Vec<i32>> {
    let mut found = children(root)?;
    let mut next = 0;
    while next < found.len() {
        found.extend(children_unless_gone(found[next])?);
        next += 1;
    }
    Some(found)
}

/// Whether this process is a child subreaper (see `startup::platform::protect_service`).
fn reaps_orphans() -> bool {
    let mut reaper: libc::c_int = 0;
    // SAFETY: prctl writes one int through the pointer, which lives across the call.
    let asked = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut reaper) };
    asked == 0 && reaper != 0
}

/// Whether any process, zombies included, is still in process group `pgrp`.
pub fn group_has_members(pgrp: i32) -> bool {
    group_exists(pgrp)
}

/// Whether process group `pgrp` has any member, zombies included: one kill(2) with no signal,
/// which the kernel answers from the group's own list (a scan of /proc costs a few hundred
/// file reads on a busy machine, and this is asked at the end of every execution).
fn group_exists(pgrp: i32) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing; it only looks the group up.
    let found = unsafe { libc::kill(-pgrp, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The children of `pid`, from each of its threads' `children` file (a subreaper's orphans
/// are adopted by one of its threads); `None` where the kernel lacks those files.
pub fn children(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    for task in tasks.filter_map(Result::ok) {
        let path = task.path().join("children");
        match std::fs::read_to_string(&path) {
            Ok(list) => children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            // The thread may have exited since the listing; a missing file otherwise means
            // the kernel has no such files at all.
            Err(_) if task.path().exists() => return None,
            Err(_) => {}
        }
    }
    Some(children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn fields_are_read_after_the_command_name() {
        let stat = Stat::parse("42 (python3) S 7 42 42 0").expect("parses");
        assert_eq!((stat.state, stat.ppid, stat.pgrp), ('S', 7, 42));
        let line = "9 (p) R 1 9 9 0 -1 0 0 0 0 0 30 12 5 3 20 0 1 0 0 0 0";
        assert_eq!(Stat::parse(line).expect("parses").cpu_ticks, 50);
        assert_eq!(Stat::parse(line).expect("parses").own_cpu_ticks, 42);
        let tricky = Stat::parse("42 (a) b) (c) Z 9 1 1").expect("parses");
        assert_eq!((tricky.state, tricky.ppid, tricky.pgrp), ('Z', 9, 1));
        assert!(tricky.is_zombie());
        assert_eq!(Stat::parse("garbage"), None);
    }

    #[test]
    fn a_child_is_listed_and_its_group_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let pid = child.id() as i32;
        let children = children(std::process::id() as i32).expect("children files");
        assert!(children.contains(&pid), "{children:?} lacks {pid}");
        assert!(group_exists(pid));
        assert_eq!(live_members(pid), vec![pid]);
        child.kill().expect("killed");
        child.wait().expect("reaped");
        assert!(!group_exists(pid));
    }

    #[test]
    fn a_process_killed_has_let_go_and_a_live_one_has_not() {
        let line = |flags: u64, vsize: u64| {
            format!("9 (p) R 1 9 9 0 -1 {flags} 0 0 0 0 30 12 5 3 20 0 1 0 0 {vsize} 0")
        };
        let parsed = |flags, vsize| Stat::parse(&line(flags, vsize)).expect("parses");
        assert_eq!(
            (parsed(0x404, 0).flags, parsed(0x404, 7).vsize),
            (0x404, Some(7))
        );
        assert!(parsed(0x404, 0).has_let_go(), "exiting, address space gone");
        assert!(
            !parsed(0x404, 4096).has_let_go(),
            "exiting, address space still held"
        );
        assert!(!parsed(0x400, 0).has_let_go(), "not exiting");
        assert!(!Stat::parse("9 (p) R 1 9 9 0 -1 4")
            .expect("parses")
            .has_let_go());

        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep starts");
        let pid = child.id() as i32;
        assert!(!has_let_go(pid), "a sleeping process can still act");
        child.kill().expect("killed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !has_let_go(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the killed process never let go"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child.wait().expect("reaped");
        assert!(has_let_go(pid), "a process gone has let go");
    }

    #[test]
    fn a_groups_members_are_found_below_the_root_and_no_one_else() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .process_group(0)
            .spawn()
            .expect("sh starts");
        let group = shell.id() as i32;
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let members = loop {
            let members = group_below(me, group).expect("children files");
            if members.len() == 3 || std::time::Instant::now() > deadline {
                break members;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        // SAFETY: kill(2) of the test's own process group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        shell.wait().expect("reaped");
        assert_eq!(
            members.len(),
            3,
            "the shell and its two sleeps: {members:?}"
        );
        assert!(members.iter().all(|(_, stat)| stat.pgrp == group));
        assert!(members.iter().any(|(pid, _)| *pid == group));
        assert_eq!(group_below(me, me + 1_000_000), Some(Vec::new()));
    }

    #[test]
    fn this_process_is_found() {
        // SAFETY: getpid and getpgrp cannot fail.
        let (pid, pgrp) = unsafe { (libc::getpid(), libc::getpgrp()) };
        assert_eq!(Stat::of(pid).map(|stat| stat.pgrp), Some(pgrp));
        assert!(pids().contains(&pid));
        assert!(private_resident_bytes(pid).is_some_and(|bytes| bytes > 0));
    }
}
