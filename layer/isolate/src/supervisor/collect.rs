//! The script's process, watched: its hand-over, its sections, how it ended and its CPU time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Longest wait, once the sections are in, for the script's process to finish exiting, where
/// its CPU clock cannot be read: about a millisecond, a few tens with a heap of gigabytes.
const EXIT_WAIT: Duration = Duration::from_millis(100);
/// The most one read of the sections' pipe takes (the pipe grows to a megabyte for a state).
const READ_BYTES: usize = 1 << 20;
/// The kernel's CPU-time clock of a whole process, as clock_getcpuclockid(3) encodes it.
const CPUCLOCK_SCHED: i32 = 2;
/// Without a pidfd (kernels before 5.3), how often the child is checked on.
const POLL_WITHOUT_PIDFD_MS: i32 = 10;

/// What the script's process said before its job: its pid, and the CPU time its warm-up used.
#[derive(Debug, Clone, Copy)]
pub struct HandOver {
    pub pid: libc::pid_t,
    pub warm_up_us: u64,
}

/// Reads the hand-over to its end; `None` when the process died before it wrote one.
pub fn hand_over(fd: RawFd) -> Option<HandOver> {
    let text = read_to_end(fd, 64);
    let text = String::from_utf8(text).ok()?;
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok().filter(|pid| *pid > 0)?;
    let warm_up_us = words.next().and_then(|word| word.parse().ok()).unwrap_or(0);
    Some(HandOver { pid, warm_up_us })
}

/// How the script's process ended: `status` is None when it wrote its sections and closed them
/// (how it then exits no longer matters), else its wait status.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    pub status: Option<i32>,
    pub cpu_ms: Option<u64>,
}

/// What was read of the sections.
#[derive(Debug)]
pub struct Collected {
    pub bytes: Vec<u8>,
    pub oversized: bool,
    pub ending: Ending,
}

/// Reads the sections. Done at end of file once some are in (the child closes its end right
/// after writing, so the answer need not wait for its exit), or else when the child exits (it
/// may have written nothing, or a grandchild may hold the pipe open).
pub fn sections(pid: libc::pid_t, pipe: RawFd, limit: usize) -> Collected {
    let exited = pidfd_open(pid);
    let mut bytes = Vec::new();
    let mut oversized = false;
    let mut pipe_open = true;
    let mut chunk = vec![0u8; READ_BYTES];
    loop {
        let (pipe_ready, child_done) = wait_for(pipe_open.then_some(pipe), exited.as_ref(), pid);
        if pipe_ready {
            let count = read_some(pipe, &mut chunk);
            if count == 0 {
                pipe_open = false;
                if !bytes.is_empty() && !oversized {
                    let cpu_ms = cpu_after_sections(pid, exited.as_ref());
                    let ending = Ending {
                        status: None,
                        cpu_ms,
                    };
                    return Collected {
                        bytes,
                        oversized,
                        ending,
                    };
                }
            } else if oversized || bytes.len() + count > limit {
                oversized = true;
                // SAFETY: kill with a pid and a signal: the script's process, over its bound.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            } else {
                bytes.extend_from_slice(&chunk[..count]);
            }
        }
        if child_done {
            break;
        }
    }
    after_exit(pid, pipe, limit, bytes, oversized)
}

/// Whatever is left in the pipe once the process that held it has died, for a process that
/// died before its hand-over: its sections, and how it ended.
pub fn after_early_death(pipe: RawFd, limit: usize) -> Collected {
    after_exit(-1, pipe, limit, Vec::new(), false)
}

/// Reaps the process (`-1`: the one child), then takes what is left in the pipe after `bytes`.
fn after_exit(
    pid: libc::pid_t,
    pipe: RawFd,
    limit: usize,
    mut bytes: Vec<u8>,
    mut oversized: bool,
) -> Collected {
    let (status, cpu_ms) = reap(pid);
    if !oversized {
        drain(pipe, &mut bytes, limit);
        oversized = bytes.len() > limit;
    }
    if oversized {
        bytes.clear();
    }
    let ending = Ending {
        status: Some(status),
        cpu_ms,
    };
    Collected {
        bytes,
        oversized,
        ending,
    }
}

/// Waits until the pipe has something (or its end) or the child has exited.
fn wait_for(pipe: Option<RawFd>, exited: Option<&OwnedFd>, pid: libc::pid_t) -> (bool, bool) {
    let mut fds = Vec::with_capacity(2);
    if let Some(pipe) = pipe {
        fds.push(libc::pollfd {
            fd: pipe,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    if let Some(exited) = exited {
        fds.push(libc::pollfd {
            fd: exited.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let timeout = if exited.is_some() {
        -1
    } else {
        POLL_WITHOUT_PIDFD_MS
    };
    // SAFETY: poll over a live array of pollfds.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if ready < 0 {
        return (false, false);
    }
    let pipe_ready = pipe.is_some() && fds[0].revents != 0;
    let child_done = match exited {
        Some(_) => fds.last().is_some_and(|fd| fd.revents != 0),
        None => has_exited(pid),
    };
    (pipe_ready, child_done)
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags; the fd returned is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh fd owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: an all-zero siginfo is valid; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waitid into a local siginfo.
    let result = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    // SAFETY: reading the pid field waitid set (zero when nothing has exited).
    result < 0 || unsafe { info.si_pid() } != 0
}

/// Waits for the process (or any child, with -1): its wait status and CPU time.
fn reap(pid: libc::pid_t) -> (i32, Option<u64>) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 into local status and rusage.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut usage) };
        if reaped > 0 {
            return (status, Some(rusage_ms(&usage)));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return (0, None);
        }
    }
}

fn rusage_ms(usage: &libc::rusage) -> u64 {
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    (micros(usage.ru_utime) + micros(usage.ru_stime)) / 1000
}

/// The script's process closes its sections and exits at once; its exit takes about a
/// millisecond, several with numpy and pandas mapped, all of it on the answer's path if waited
/// for. So its CPU time is read from its CPU clock while it exits, with the clock ticks of the
/// children it waited for. Only where that clock cannot be read is the exit waited for (at most
/// EXIT_WAIT, then the kernel's coarser figure).
fn cpu_after_sections(pid: libc::pid_t, exited: Option<&OwnedFd>) -> Option<u64> {
    if let Some(live) = live_cpu_ms(pid) {
        return Some(live);
    }
    if exited_within(pid, exited, EXIT_WAIT) {
        return reap(pid).1;
    }
    proc_ticks(pid, 11..15).map(ticks_to_ms)
}

/// CPU time of a process not yet reaped: its own threads' (its process CPU clock), plus the
/// children it waited for, in clock ticks.
fn live_cpu_ms(pid: libc::pid_t) -> Option<u64> {
    let clock = ((!pid) << 3) | CPUCLOCK_SCHED;
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime into a local timespec.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let own_ms = now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000;
    let children = proc_ticks(pid, 13..15).unwrap_or(0);
    Some(own_ms + ticks_to_ms(children))
}

fn exited_within(pid: libc::pid_t, exited: Option<&OwnedFd>, wait: Duration) -> bool {
    if let Some(exited) = exited {
        let mut fd = libc::pollfd {
            fd: exited.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll over one live pollfd.
        return unsafe { libc::poll(&mut fd, 1, wait.as_millis() as i32) } > 0;
    }
    let deadline = Instant::now() + wait;
    while !has_exited(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// The sum of some of fields 14 to 17 of /proc/PID/stat (utime stime cutime cstime), in clock
/// ticks; `fields` counts from the first field after the command name (which may itself hold
/// spaces and parentheses), so utime is 11.
fn proc_ticks(pid: libc::pid_t, fields: std::ops::Range<usize>) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.iter().rposition(|&byte| byte == b')')? + 1..];
    let words: Vec<&[u8]> = after_name
        .split(|&byte| byte == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .get(fields)?
        .iter()
        .map(|word| std::str::from_utf8(word).ok()?.parse::<u64>().ok())
        .sum()
}

fn ticks_to_ms(ticks: u64) -> u64 {
    // SAFETY: sysconf with a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1000 / per_second
}

/// Reads what is there without waiting (grandchildren may hold the pipe open), up to one byte
/// past `limit`.
fn drain(pipe: RawFd, bytes: &mut Vec<u8>, limit: usize) {
    // SAFETY: fcntl on an fd this process holds.
    unsafe {
        let flags = libc::fcntl(pipe, libc::F_GETFL);
        libc::fcntl(pipe, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut chunk = vec![0u8; 65536];
    while bytes.len() <= limit {
        let count = read_some(pipe, &mut chunk);
        if count == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..count]);
    }
}

/// One read; 0 at end of file, on an error, or when nothing is there (non-blocking).
fn read_some(fd: RawFd, buffer: &mut [u8]) -> usize {
    loop {
        // SAFETY: reading into a live buffer of its own length.
        let count = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if count >= 0 {
            return count as usize;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 0;
        }
    }
}

fn read_to_end(fd: RawFd, limit: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64];
    while bytes.len() < limit {
        let count = read_some(fd, &mut chunk);
        if count == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..count]);
    }
    bytes
}
