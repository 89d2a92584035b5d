//! The script's process, watched: its hand-over, its sections, how it ended and its CPU time.

use super::buffer::Buffer;
use super::sys::{self, Fd, Pid};
use super::text;

/// Longest wait, once the sections are in, for the script's process to finish exiting, where
/// its CPU clock cannot be read: about a millisecond, a few tens with a heap of gigabytes.
const EXIT_WAIT_MS: u64 = 100;
/// The most one read of the sections' pipe takes (the pipe grows to a megabyte for a state).
const READ_BYTES: usize = 1 << 20;
/// The kernel's CPU-time clock of a whole process, as clock_getcpuclockid(3) encodes it.
const CPUCLOCK_SCHED: i32 = 2;
/// Without a pidfd (kernels before 5.3), how often the child is checked on.
const POLL_WITHOUT_PIDFD_MS: u64 = 10;
/// What /proc/PID/stat counts CPU time in: USER_HZ, 100 on every Linux architecture this
/// runs on (the kernel's ABI; sysconf(_SC_CLK_TCK) reads the same value from the auxv).
const TICKS_PER_SECOND: u64 = 100;

/// What the script's process said before its job: its pid, and the CPU time its warm-up used.
#[derive(Debug, Clone, Copy)]
pub struct HandOver {
    pub pid: Pid,
    pub warm_up_us: u64,
}

/// Reads the hand-over to its end; `None` when the process died before it wrote one.
pub fn hand_over(fd: Fd) -> Option<HandOver> {
    let mut text = [0u8; 64];
    let length = read_to_end(fd, &mut text);
    let mut words = text[..length]
        .split(|byte| byte.is_ascii_whitespace())
        .filter(|word| !word.is_empty());
    let pid = text::parse(words.next()?)
        .and_then(|pid| Pid::try_from(pid).ok())
        .filter(|pid| *pid > 0)?;
    let warm_up_us = words.next().and_then(text::parse).unwrap_or(0);
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
    pub bytes: Buffer,
    pub oversized: bool,
    pub ending: Ending,
}

/// A pidfd, closed when dropped.
struct Exited(Fd);

impl Drop for Exited {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// Reads the sections. Done at end of file once some are in (the child closes its end right
/// after writing, so the answer need not wait for its exit), or else when the child exits (it
/// may have written nothing, or a grandchild may hold the pipe open).
pub fn sections(pid: Pid, pipe: Fd, limit: usize) -> Collected {
    let exited = pidfd_open(pid);
    let mut bytes = Buffer::new();
    let mut oversized = false;
    let mut pipe_open = true;
    // Once over the bound, what is still coming is read here only to be dropped.
    let mut discard = [0u8; 65536];
    loop {
        let (pipe_ready, child_done) = wait_for(pipe_open.then_some(pipe), exited.as_ref(), pid);
        if pipe_ready {
            let room = if oversized {
                &mut discard[..]
            } else {
                bytes.spare(READ_BYTES)
            };
            let out_of_memory = room.is_empty();
            let count = read_some(pipe, room);
            if out_of_memory {
                oversized = true;
                sys::kill(pid, sys::SIGKILL);
            } else if count == 0 {
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
                // The script's process, over its bound.
                sys::kill(pid, sys::SIGKILL);
            } else {
                bytes.commit(count);
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
pub fn after_early_death(pipe: Fd, limit: usize) -> Collected {
    after_exit(-1, pipe, limit, Buffer::new(), false)
}

/// Reaps the process (`-1`: the one child), then takes what is left in the pipe after `bytes`.
fn after_exit(
    pid: Pid,
    pipe: Fd,
    limit: usize,
    mut bytes: Buffer,
    mut oversized: bool,
) -> Collected {
    let (status, cpu_ms) = reap(pid);
    if !oversized {
        let whole = drain(pipe, &mut bytes, limit);
        oversized = !whole || bytes.len() > limit;
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
fn wait_for(pipe: Option<Fd>, exited: Option<&Exited>, pid: Pid) -> (bool, bool) {
    let watched = |fd: Fd| sys::PollFd {
        fd,
        events: sys::POLLIN,
        revents: 0,
    };
    let mut fds = [watched(-1), watched(-1)];
    let mut count = 0;
    for fd in [pipe, exited.map(|exited| exited.0)].into_iter().flatten() {
        fds[count] = watched(fd);
        count += 1;
    }
    let timeout = if exited.is_some() {
        -1
    } else {
        POLL_WITHOUT_PIDFD_MS as i32
    };
    if sys::poll(&mut fds[..count], timeout) < 0 {
        return (false, false);
    }
    let pipe_ready = pipe.is_some() && fds[0].revents != 0;
    let child_done = match exited {
        Some(_) => fds[count - 1].revents != 0,
        None => sys::has_exited(pid),
    };
    (pipe_ready, child_done)
}

fn pidfd_open(pid: Pid) -> Option<Exited> {
    let fd = sys::pidfd_open(pid);
    (fd >= 0).then_some(Exited(fd as Fd))
}

/// Waits for the process (or any child, with -1): its wait status and CPU time.
fn reap(pid: Pid) -> (i32, Option<u64>) {
    let mut status = 0;
    let mut usage = sys::Usage::default();
    loop {
        let reaped = sys::wait4(pid, &mut status, &mut usage);
        if reaped > 0 {
            let micros = |time: sys::Time| time.seconds as u64 * 1_000_000 + time.fraction as u64;
            return (
                status,
                Some((micros(usage.user) + micros(usage.system)) / 1000),
            );
        }
        if reaped != -sys::EINTR {
            return (0, None);
        }
    }
}

/// The script's process closes its sections and exits at once; its exit takes about a
/// millisecond, several with numpy and pandas mapped, all of it on the answer's path if waited
/// for. So its CPU time is read from its CPU clock while it exits, with the clock ticks of the
/// children it waited for. Only where that clock cannot be read is the exit waited for (at most
/// EXIT_WAIT_MS, then the kernel's coarser figure).
fn cpu_after_sections(pid: Pid, exited: Option<&Exited>) -> Option<u64> {
    if let Some(live) = live_cpu_ms(pid) {
        return Some(live);
    }
    if exited_within(pid, exited, EXIT_WAIT_MS) {
        return reap(pid).1;
    }
    proc_ticks(pid, 11..15).map(ticks_to_ms)
}

/// CPU time of a process not yet reaped: its own threads' (its process CPU clock), plus the
/// children it waited for, in clock ticks.
fn live_cpu_ms(pid: Pid) -> Option<u64> {
    let clock = ((!pid) << 3) | CPUCLOCK_SCHED;
    let mut now = sys::Time::default();
    if sys::clock_gettime(clock, &mut now) != 0 {
        return None;
    }
    let own_ms = now.seconds as u64 * 1000 + now.fraction as u64 / 1_000_000;
    let children = proc_ticks(pid, 13..15).unwrap_or(0);
    Some(own_ms + ticks_to_ms(children))
}

fn exited_within(pid: Pid, exited: Option<&Exited>, wait_ms: u64) -> bool {
    if let Some(exited) = exited {
        let mut fd = [sys::PollFd {
            fd: exited.0,
            events: sys::POLLIN,
            revents: 0,
        }];
        return sys::poll(&mut fd, wait_ms as i32) > 0;
    }
    let mut waited = 0;
    while !sys::has_exited(pid) {
        if waited >= wait_ms {
            return false;
        }
        sys::sleep_ms(2);
        waited += 2;
    }
    true
}

/// The sum of some of fields 14 to 17 of /proc/PID/stat (utime stime cutime cstime), in clock
/// ticks; `fields` counts from the first field after the command name (which may itself hold
/// spaces and parentheses), so utime is 11.
fn proc_ticks(pid: Pid, fields: core::ops::Range<usize>) -> Option<u64> {
    let mut path = text::Line::new();
    path.push(b"/proc/");
    path.push_number(u64::try_from(pid).ok()?);
    path.push(b"/stat\0");
    let fd = sys::open(path.as_bytes(), false);
    if fd < 0 {
        return None;
    }
    // A stat line is a few hundred bytes; a command name holds at most 64.
    let mut stat = [0u8; 1024];
    let length = read_to_end(fd as Fd, &mut stat);
    sys::close(fd as Fd);
    stat_ticks(&stat[..length], fields)
}

fn stat_ticks(stat: &[u8], fields: core::ops::Range<usize>) -> Option<u64> {
    let after_name = &stat[stat.iter().rposition(|&byte| byte == b')')? + 1..];
    let mut words = after_name
        .split(|&byte| byte == b' ' || byte == b'\n')
        .filter(|word| !word.is_empty());
    let skipped = fields.start;
    let wanted = fields.len();
    if skipped > 0 {
        words.nth(skipped - 1)?;
    }
    let mut sum = 0;
    for _ in 0..wanted {
        sum += text::parse(words.next()?)?;
    }
    Some(sum)
}

fn ticks_to_ms(ticks: u64) -> u64 {
    ticks * 1000 / TICKS_PER_SECOND
}

/// Reads what is there without waiting (grandchildren may hold the pipe open), up to one byte
/// past `limit`; false when there was no memory to read it into.
fn drain(pipe: Fd, bytes: &mut Buffer, limit: usize) -> bool {
    sys::set_nonblocking(pipe);
    while bytes.len() <= limit {
        let room = bytes.spare(65536);
        if room.is_empty() {
            return false;
        }
        let count = read_some(pipe, room);
        if count == 0 {
            break;
        }
        bytes.commit(count);
    }
    true
}

/// One read; 0 at end of file, on an error, when nothing is there (non-blocking) or when there
/// is no room to read into.
fn read_some(fd: Fd, buffer: &mut [u8]) -> usize {
    if buffer.is_empty() {
        return 0;
    }
    loop {
        let count = sys::read(fd, buffer);
        if count >= 0 {
            return count as usize;
        }
        if count != -sys::EINTR {
            return 0;
        }
    }
}

/// Reads until end of file or until `buffer` is full: how many bytes it holds.
fn read_to_end(fd: Fd, buffer: &mut [u8]) -> usize {
    let mut length = 0;
    while length < buffer.len() {
        let count = read_some(fd, &mut buffer[length..]);
        if count == 0 {
            break;
        }
        length += count;
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticks_come_from_the_fields_after_the_command_name() {
        // A command name with a space and parentheses of its own, as a script may choose.
        let stat = b"42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 7 3 2 1 20 0 1 0\n";
        assert_eq!(stat_ticks(stat, 11..15), Some(7 + 3 + 2 + 1));
        assert_eq!(stat_ticks(stat, 13..15), Some(2 + 1));
        assert_eq!(stat_ticks(b"no name here", 11..15), None);
        assert_eq!(ticks_to_ms(250), 2500);
    }

    #[test]
    fn a_hand_over_is_a_pid_and_the_warm_ups_cpu() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a two-int array (the tests run with the C library).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert_eq!(sys::write(fds[1], b"123 4567\n"), 9);
        sys::close(fds[1]);
        let hand_over = hand_over(fds[0]).expect("a hand-over");
        sys::close(fds[0]);
        assert_eq!((hand_over.pid, hand_over.warm_up_us), (123, 4567));
    }
}
