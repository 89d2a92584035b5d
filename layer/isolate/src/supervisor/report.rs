//! The supervisor's one run: the script's process watched to its end, then the report on fd 3.

use super::collect::{self, Collected};
use super::sys::{self, Fd};
use super::text::Line;
use super::{termination, Options};

/// The report channel to the service.
const RESULT_FD: Fd = 3;
/// A pipe's capacity until grown.
const PIPE_DEFAULT_BYTES: usize = 65536;
/// The most a pipe is grown to.
const PIPE_MAX_BYTES: usize = 1 << 20;

/// Supervises the script's process to its end and reports.
pub fn supervise(options: &Options) {
    // The script's streams belong to the script: the service reads them to end of file, which
    // must come when the script's process lets go of them, not when this one exits.
    to_dev_null();
    let limit = options.frame_limit + options.files_limit + options.state_limit + 2;
    let hand_over = collect::hand_over(options.hand_fd);
    // The hand-over's read end, read to its end.
    sys::close(options.hand_fd);
    let mut collected = match hand_over {
        Some(hand_over) => collect::sections(hand_over.pid, options.frame_fd, limit),
        None => collect::after_early_death(options.frame_fd, limit),
    };
    if let (Some(hand_over), Some(cpu_ms)) = (hand_over, collected.ending.cpu_ms) {
        // An execution's CPU time counts from its job, not from its warm-up.
        collected.ending.cpu_ms = Some(cpu_ms.saturating_sub(hand_over.warm_up_us / 1000));
    }
    write_report(&sections(&collected, options));
}

/// The frame, the files and the state, as views of what was read; all empty when any is over
/// its bound.
struct Sections<'a> {
    frame: &'a [u8],
    files: &'a [u8],
    state: &'a [u8],
    oversized: bool,
    ending: collect::Ending,
}

fn sections<'a>(collected: &'a Collected, options: &Options) -> Sections<'a> {
    let (frame, rest) = split_line(collected.bytes.as_slice());
    let (files, state) = split_line(rest);
    let oversized = collected.oversized
        || frame.len() > options.frame_limit
        || files.len() > options.files_limit
        || state.len() > options.state_limit;
    let (frame, files, state) = if oversized {
        (&[][..], &[][..], &[][..])
    } else {
        (frame, files, state)
    };
    Sections {
        frame,
        files,
        state,
        oversized,
        ending: collected.ending,
    }
}

/// What comes before the first newline, and what after it (nothing when there is none).
fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&byte| byte == b'\n') {
        Some(newline) => (&bytes[..newline], &bytes[newline + 1..]),
        None => (bytes, &[]),
    }
}

fn header(sections: &Sections<'_>) -> Line {
    let (exit_code, signal) = match sections.ending.status {
        None => (None, None),
        Some(status) => termination(status),
    };
    let mut line = Line::new();
    line.push(b"{\"frame_bytes\":");
    line.push_number(sections.frame.len() as u64);
    line.push(b",\"frame_oversized\":");
    line.push(if sections.oversized {
        b"true"
    } else {
        b"false"
    });
    line.push(b",\"files_bytes\":");
    line.push_number(sections.files.len() as u64);
    line.push(b",\"state_bytes\":");
    line.push_number(sections.state.len() as u64);
    line.push(b",\"exit_code\":");
    line.push_number_or_null(exit_code);
    line.push(b",\"signal\":");
    line.push_number_or_null(signal);
    line.push(b",\"cpu_ms\":");
    line.push_number_or_null(sections.ending.cpu_ms);
    line.push(b"}\n");
    line
}

fn write_report(sections: &Sections<'_>) {
    let header = header(sections);
    let parts = [
        header.as_bytes(),
        sections.frame,
        sections.files,
        sections.state,
    ];
    fit_pipe(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        write_all(part);
    }
    // Closing the report channel: end of file tells the service the report is whole.
    sys::close(RESULT_FD);
}

/// Grows the report's pipe when the report is more than its default capacity: a session's
/// state then crosses in a few writes. Only a speed-up: a refusal leaves the pipe as it was.
fn fit_pipe(size: usize) {
    if size > PIPE_DEFAULT_BYTES {
        sys::grow_pipe(RESULT_FD, size.next_power_of_two().min(PIPE_MAX_BYTES));
    }
}

fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let count = sys::write(RESULT_FD, bytes);
        if count > 0 {
            bytes = &bytes[count as usize..];
        } else if count != -sys::EINTR {
            return;
        }
    }
}

fn to_dev_null() {
    let null = sys::open(b"/dev/null\0", true);
    if null >= 0 {
        for fd in 0..3 {
            sys::dup2(null as Fd, fd);
        }
        sys::close(null as Fd);
    }
}

#[cfg(test)]
mod tests {
    use super::super::buffer::Buffer;
    use super::super::collect::Ending;
    use super::*;

    fn options() -> Options {
        Options {
            frame_fd: 4,
            hand_fd: 5,
            frame_limit: 16,
            files_limit: 8,
            state_limit: 4,
        }
    }

    fn collected(bytes: &[u8], status: Option<i32>) -> Collected {
        let mut buffer = Buffer::new();
        assert!(buffer.extend_from_slice(bytes));
        Collected {
            bytes: buffer,
            oversized: false,
            ending: Ending {
                status,
                cpu_ms: Some(7),
            },
        }
    }

    #[test]
    fn the_sections_come_apart_at_their_newlines() {
        let read = collected(b"{\"a\":1}\n{}\nSTAT", None);
        let sections = sections(&read, &options());
        assert_eq!(sections.frame, b"{\"a\":1}");
        assert_eq!(sections.files, b"{}");
        assert_eq!(sections.state, b"STAT");
        assert!(!sections.oversized);
        assert_eq!(
            header(&sections).as_bytes(),
            b"{\"frame_bytes\":7,\"frame_oversized\":false,\"files_bytes\":2,\"state_bytes\":4,\
             \"exit_code\":null,\"signal\":null,\"cpu_ms\":7}\n"
        );
    }

    #[test]
    fn a_section_over_its_bound_drops_them_all() {
        for bytes in [
            &b"{}\n123456789\n"[..],
            b"{}\n\n12345",
            b"01234567890123456789",
        ] {
            let read = collected(bytes, None);
            let sections = sections(&read, &options());
            assert!(sections.oversized, "{bytes:?}");
            assert!(sections.frame.is_empty() && sections.files.is_empty());
        }
    }

    fn contains(line: &Line, text: &str) -> bool {
        let text = text.as_bytes();
        line.as_bytes()
            .windows(text.len())
            .any(|window| window == text)
    }

    #[test]
    fn how_the_process_ended_is_the_wait_status() {
        let read = collected(b"", Some(libc::SIGKILL));
        let killed = sections(&read, &options());
        assert!(contains(
            &header(&killed),
            "\"exit_code\":null,\"signal\":9"
        ));
        let read = collected(b"", Some(3 << 8));
        let exited = sections(&read, &options());
        assert!(contains(
            &header(&exited),
            "\"exit_code\":3,\"signal\":null"
        ));
    }
}
