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
        let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        Some(Self { state, ppid, pgrp })
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
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

/// Whether any live (non-zombie) process is still in process group `pgrp`.
pub fn group_has_live_members(pgrp: i32) -> bool {
    pids()
        .into_iter()
        .filter_map(Stat::of)
        .any(|stat| stat.pgrp == pgrp && !stat.is_zombie())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_the_command_name() {
        let stat = Stat::parse("42 (python3) S 7 42 42 0").expect("parses");
        assert_eq!((stat.state, stat.ppid, stat.pgrp), ('S', 7, 42));
        let tricky = Stat::parse("42 (a) b) (c) Z 9 1 1").expect("parses");
        assert_eq!((tricky.state, tricky.ppid, tricky.pgrp), ('Z', 9, 1));
        assert!(tricky.is_zombie());
        assert_eq!(Stat::parse("garbage"), None);
    }

    #[test]
    fn this_process_is_found() {
        // SAFETY: getpid and getpgrp cannot fail.
        let (pid, pgrp) = unsafe { (libc::getpid(), libc::getpgrp()) };
        assert_eq!(Stat::of(pid).map(|stat| stat.pgrp), Some(pgrp));
        assert!(pids().contains(&pid));
    }
}
