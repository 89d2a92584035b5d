//! The C entry points a template's child calls (layer/harness_template.py, through ctypes),
//! right after the template forked it and before anything else:
//!
//! 1. [`pyexec_enter`]: a session of its own; its pidfd to the service, which moves it into
//!    the execution's cgroup and answers "go"; then the first half of the spec. Returns 1 when
//!    the spec made a new PID namespace, else 0.
//! 2. With a new PID namespace, [`pyexec_continue_in_namespace`]: the caller goes on as the
//!    namespace's first process (a child sharing its memory).
//! 3. [`pyexec_confine`]: the second half, then "isolated" to the service.
//!
//! Both return a negative number on failure, after telling the service which step failed and
//! why; the caller then exits without running anything.
//!
//! A process the service starts (a template, or a cold sandbox under nsjail, whose first
//! process the service cannot reach between fork and exec) applies its whole spec at once with
//! [`pyexec_apply`], before it imports anything.
//!
//! Every harness, however it started, splits itself with [`pyexec_split`] into the supervisor
//! and the script's process once isolated.

use std::ffi::{c_char, c_int, CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::fdpass;
use crate::spec::Spec;
use crate::steps::Fds;

/// # Safety
/// `spec` points to `length` readable bytes; `status` is the child's end of its status socket.
#[no_mangle]
pub unsafe extern "C" fn pyexec_enter(spec: *const u8, length: usize, status: c_int) -> c_int {
    // SAFETY: the caller's promise.
    let bytes = unsafe { std::slice::from_raw_parts(spec, length) };
    let entered = decode(bytes).and_then(|spec| {
        handshake(status)?;
        spec.enter()
            .map_err(|error| ("entering the sandbox", error))?;
        Ok(c_int::from(spec.namespaces.is_some()))
    });
    answer(status, entered)
}

/// After [`pyexec_enter`] made a new PID namespace: goes on as its first process, a child that
/// shares this process's memory (see [`crate::vfork`]); this process never returns (it execs
/// `waiter`, the supervisor binary, once woken). Returns 0 in the child, 1 where the platform
/// has no such path (the caller forks instead), or a negative number on failure, after telling
/// the service.
///
/// # Safety
/// The caller is single-threaded; `status` is the child's end of its status socket; `waiter`
/// is a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn pyexec_continue_in_namespace(
    status: c_int,
    waiter: *const c_char,
) -> c_int {
    // SAFETY: the caller's promise.
    let waiter = unsafe { CStr::from_ptr(waiter) }.to_owned();
    match crate::vfork::continue_in_child(&waiter) {
        Ok(()) => 0,
        Err(error) if error.raw_os_error() == Some(libc::ENOSYS) => 1,
        Err(error) => answer(status, Err(("entering the PID namespace", error))),
    }
}

/// Splits the execution into its supervisor and the script's process (see [`crate::split`]):
/// `argv` is `length` bytes of NUL-terminated arguments, the supervisor's path first. Returns 0
/// in the script's process, 1 where the platform has no such path (the caller forks and execs
/// instead), or a negative errno (-EAGAIN: the process limit, worth another try).
///
/// # Safety
/// The caller is single-threaded; `argv` points to `length` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyexec_split(argv: *const u8, length: usize) -> c_int {
    // SAFETY: the caller's promise.
    let bytes = unsafe { std::slice::from_raw_parts(argv, length) };
    let arguments: Option<Vec<CString>> = bytes
        .split(|&byte| byte == 0)
        .filter(|argument| !argument.is_empty())
        .map(|argument| CString::new(argument).ok())
        .collect();
    let Some(arguments) = arguments.filter(|arguments| !arguments.is_empty()) else {
        return -libc::EINVAL;
    };
    match crate::split::split(&arguments) {
        Ok(()) => 0,
        Err(error) if error.raw_os_error() == Some(libc::ENOSYS) => 1,
        Err(error) => -error.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// # Safety
/// As [`pyexec_enter`]; `landlock` is a ruleset fd, or negative for none.
#[no_mangle]
pub unsafe extern "C" fn pyexec_confine(
    spec: *const u8,
    length: usize,
    status: c_int,
    landlock: c_int,
) -> c_int {
    // SAFETY: the caller's promise.
    let bytes = unsafe { std::slice::from_raw_parts(spec, length) };
    let confined = decode(bytes).and_then(|spec| {
        let fds = Fds {
            landlock: (landlock >= 0).then_some(landlock),
            listener_socket: Some(status),
        };
        spec.confine(fds).map_err(|error| ("confining", error))?;
        fdpass::send(status, fdpass::ISOLATED, &[]).map_err(|error| ("reporting", error))?;
        Ok(0)
    });
    answer(status, confined)
}

/// Applies a whole spec to the calling process (no new PID namespace, no fds); on failure,
/// says why on stderr and returns a negative number.
///
/// # Safety
/// `spec` points to `length` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyexec_apply(spec: *const u8, length: usize) -> c_int {
    // SAFETY: the caller's promise.
    let bytes = unsafe { std::slice::from_raw_parts(spec, length) };
    let applied = decode(bytes).and_then(|spec| {
        spec.apply(Fds::default())
            .map_err(|error| ("isolating", error))
    });
    match applied {
        Ok(()) => 0,
        Err((step, error)) => {
            let message = format!("pyexec_isolate: {step}: {error}\n");
            // SAFETY: write on stderr from a live buffer.
            unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
            -1
        }
    }
}

type Step<T> = Result<T, (&'static str, io::Error)>;

fn decode(bytes: &[u8]) -> Step<Spec> {
    Spec::decode(bytes).map_err(|_| ("decoding", io::Error::from(io::ErrorKind::InvalidData)))
}

/// A session of its own (one signal to the group reaches the whole execution), then the pidfd
/// out and the service's "go" back.
fn handshake(status: RawFd) -> Step<()> {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } < 0 {
        return Err(("starting a session", io::Error::last_os_error()));
    }
    let pidfd = fdpass::own_pidfd().map_err(|error| ("opening a pidfd", error))?;
    fdpass::send(status, fdpass::PID, &[pidfd.as_raw_fd()])
        .map_err(|error| ("sending the pidfd", error))?;
    drop(pidfd);
    let mut buffer = [0u8; fdpass::MAX_MESSAGE];
    let (length, _) =
        fdpass::receive(status, &mut buffer, 0).map_err(|error| ("waiting for go", error))?;
    if &buffer[..length] != fdpass::GO {
        return Err((
            "waiting for go",
            io::Error::from(io::ErrorKind::ConnectionAborted),
        ));
    }
    Ok(())
}

fn answer(status: RawFd, result: Step<c_int>) -> c_int {
    match result {
        Ok(value) => value,
        Err((step, error)) => {
            let message = [fdpass::ERROR_PREFIX, format!("{step}: {error}").as_bytes()].concat();
            let _ = fdpass::send(status, &message, &[]);
            -1
        }
    }
}
