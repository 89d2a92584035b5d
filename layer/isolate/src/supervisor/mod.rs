//! The supervisor of one execution: a small program of its own (`pyexec-supervise`), exec'd by
//! the harness's process as it splits off the script's process (crate::split). It never runs
//! user code and shares no memory with the script's process, so nothing a script does can
//! forge what it reports: how the script's process ended and the CPU time it used.
//!
//! `pyexec-supervise supervise FRAME_FD HAND_FD FRAME_LIMIT FILES_LIMIT STATE_LIMIT`: the
//! script's process says on HAND_FD, before its job, its pid and the CPU its warm-up used,
//! then writes its sections on FRAME_FD: the frame (one line of JSON), a newline, the output
//! files it found (one line of JSON), a newline, a session's state. The supervisor reads them,
//! bounded, and writes the report on fd 3: a header line, then the sections as they came
//! (src/execute/answer/report.rs reads it).
//!
//! `pyexec-supervise wait`: the parent left outside a new PID namespace (crate::vfork) reaps
//! its one child and exits as it did.

mod collect;
mod report;

use std::os::fd::RawFd;

/// The harness's status for "the supervisor could not start": nothing ran.
const USAGE: i32 = 70;

/// Runs the mode `arguments` name; returns the exit status.
pub fn main(arguments: &[String]) -> i32 {
    not_dumpable();
    unblock_signals();
    run(arguments)
}

fn run(arguments: &[String]) -> i32 {
    match arguments.first().map(String::as_str) {
        Some("wait") => wait_for_child(),
        Some("supervise") => match Options::parse(&arguments[1..]) {
            Some(options) => {
                report::supervise(&options);
                0
            }
            None => USAGE,
        },
        _ => USAGE,
    }
}

/// The supervise mode's arguments.
#[derive(Debug)]
pub(crate) struct Options {
    pub frame_fd: RawFd,
    pub hand_fd: RawFd,
    pub frame_limit: usize,
    pub files_limit: usize,
    pub state_limit: usize,
}

impl Options {
    fn parse(arguments: &[String]) -> Option<Self> {
        let numbers: Vec<usize> = arguments
            .iter()
            .map(|a| a.parse().ok())
            .collect::<Option<_>>()?;
        let [frame_fd, hand_fd, frame_limit, files_limit, state_limit] = numbers[..] else {
            return None;
        };
        Some(Self {
            frame_fd: RawFd::try_from(frame_fd).ok()?,
            hand_fd: RawFd::try_from(hand_fd).ok()?,
            frame_limit,
            files_limit,
            state_limit,
        })
    }
}

/// Undumpable: a process of the script's uid cannot open this one's /proc files (its fds
/// included) nor trace it. The binary is exec-only where the layer is sealed, which makes the
/// kernel do this at exec already; saying it again covers a readable one.
fn not_dumpable() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// The split blocked every signal around its clone, and exec keeps the mask. Ignored signals
/// (SIGINT, SIGTERM: the harness's) stay ignored.
fn unblock_signals() {
    // SAFETY: an empty set, set as this (only) thread's mask.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Reaps the one child and returns its exit code, or 128 + the signal that killed it.
fn wait_for_child() -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: wait4 into a local status word.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::__WALL, std::ptr::null_mut()) };
        if pid > 0 {
            return shell_status(status);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return USAGE;
        }
    }
}

fn shell_status(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn supervise_takes_five_numbers() {
        let options =
            Options::parse(&strings(&["4", "7", "100", "200", "300"])).expect("five numbers");
        assert_eq!((options.frame_fd, options.hand_fd), (4, 7));
        assert_eq!(
            (
                options.frame_limit,
                options.files_limit,
                options.state_limit
            ),
            (100, 200, 300)
        );
        assert!(Options::parse(&strings(&["4", "7", "100", "200"])).is_none());
        assert!(Options::parse(&strings(&["4", "x", "100", "200", "300"])).is_none());
    }

    #[test]
    fn an_unknown_mode_is_a_usage_error() {
        assert_eq!(run(&strings(&["nonsense"])), USAGE);
        assert_eq!(run(&strings(&["supervise", "1"])), USAGE);
    }

    #[test]
    fn a_shell_reports_a_signal_as_128_plus_it() {
        assert_eq!(shell_status(libc::SIGKILL), 128 + 9);
        assert_eq!(shell_status(5 << 8), 5);
    }
}
