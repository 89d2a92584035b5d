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
//!
//! It is built without the standard library or a C library (`panic = "abort"`, see
//! layer/isolate/supervise.flags): its own system calls ([`sys`]) and start ([`start`]). Built
//! with the workspace's defaults instead (a `cargo build` of everything, the unit tests), it has
//! a `main` of the standard library's, and does the same.

mod buffer;
mod collect;
mod report;
#[cfg(all(panic = "abort", not(test)))]
mod start;
mod sys;
mod text;

use sys::Fd;

/// The harness's status for "the supervisor could not start": nothing ran.
const USAGE: i32 = 70;

/// Runs the mode `arguments` name and exits with its status.
pub fn main(arguments: &[&[u8]]) -> ! {
    // Undumpable: a process of the script's uid cannot open this one's /proc files (its fds
    // included) nor trace it. The binary is exec-only where the layer is sealed, which makes
    // the kernel do this at exec already; saying it again covers a readable one.
    sys::not_dumpable();
    // The split blocked every signal around its clone, and exec keeps the mask. Ignored
    // signals (SIGINT, SIGTERM: the harness's) stay ignored.
    sys::unblock_signals();
    sys::ignore_broken_pipes();
    sys::exit(run(arguments))
}

fn run(arguments: &[&[u8]]) -> i32 {
    match arguments.first().copied() {
        Some(b"wait") => wait_for_child(),
        Some(b"supervise") => match Options::parse(&arguments[1..]) {
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
    pub frame_fd: Fd,
    pub hand_fd: Fd,
    pub frame_limit: usize,
    pub files_limit: usize,
    pub state_limit: usize,
}

impl Options {
    fn parse(arguments: &[&[u8]]) -> Option<Self> {
        let [frame_fd, hand_fd, frame_limit, files_limit, state_limit] = arguments else {
            return None;
        };
        let fd = |word: &[u8]| Fd::try_from(text::parse(word)?).ok();
        let size = |word: &[u8]| usize::try_from(text::parse(word)?).ok();
        Some(Self {
            frame_fd: fd(frame_fd)?,
            hand_fd: fd(hand_fd)?,
            frame_limit: size(frame_limit)?,
            files_limit: size(files_limit)?,
            state_limit: size(state_limit)?,
        })
    }
}

/// Reaps the one child and returns its exit code, or 128 + the signal that killed it.
fn wait_for_child() -> i32 {
    let mut status = 0;
    let mut usage = sys::Usage::default();
    loop {
        let pid = sys::wait4(-1, &mut status, &mut usage);
        if pid > 0 {
            return shell_status(status);
        }
        if pid != -sys::EINTR {
            return USAGE;
        }
    }
}

/// A wait status as its exit code or the signal that ended it (WEXITSTATUS, WTERMSIG).
fn termination(status: i32) -> (Option<u64>, Option<u64>) {
    let signal = status & 0x7f;
    if signal != 0 && signal != 0x7f {
        (None, Some(signal as u64))
    } else {
        (Some(((status >> 8) & 0xff) as u64), None)
    }
}

fn shell_status(status: i32) -> i32 {
    match termination(status) {
        (_, Some(signal)) => 128 + signal as i32,
        (code, None) => code.unwrap_or(0) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervise_takes_five_numbers() {
        let options = Options::parse(&[b"4", b"7", b"100", b"200", b"300"]).expect("five numbers");
        assert_eq!((options.frame_fd, options.hand_fd), (4, 7));
        assert_eq!(
            (
                options.frame_limit,
                options.files_limit,
                options.state_limit
            ),
            (100, 200, 300)
        );
        assert!(Options::parse(&[b"4", b"7", b"100", b"200"]).is_none());
        assert!(Options::parse(&[b"4", b"x", b"100", b"200", b"300"]).is_none());
    }

    #[test]
    fn an_unknown_mode_is_a_usage_error() {
        assert_eq!(run(&[b"nonsense"]), USAGE);
        assert_eq!(run(&[b"supervise", b"1"]), USAGE);
        assert_eq!(run(&[]), USAGE);
    }

    #[test]
    fn a_shell_reports_a_signal_as_128_plus_it() {
        assert_eq!(shell_status(libc::SIGKILL), 128 + 9);
        assert_eq!(shell_status(5 << 8), 5);
        assert_eq!(termination(3 << 8), (Some(3), None));
        assert_eq!(termination(libc::SIGSEGV | 0x80), (None, Some(11)));
    }
}
