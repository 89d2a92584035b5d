//! Can nsjail start here? AWS Lambda refuses to create user namespaces, and nsjail needs one
//! (with mount, pid, net, ipc, uts and cgroup namespaces inside it) for every sandbox. Asking
//! the kernel once at start is cheap and tells the truth, where guessing from the platform's
//! name would not (the Runtime Interface Emulator on a normal host allows them).

use std::io;

/// The namespaces nsjail's policy creates, requested together as it does.
const NSJAIL_NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP;

/// `Ok` when a child process may create nsjail's namespaces; otherwise the kernel's refusal.
///
/// The attempt happens in a forked child because the kernel refuses `unshare(CLONE_NEWUSER)`
/// to a multi-threaded process (as this service is) and because the namespaces must not stick
/// to the service itself.
pub fn probe() -> io::Result<()> {
    // SAFETY: after fork the child only calls unshare and _exit, which are async-signal-safe,
    // so the other threads' state (locks held, allocator) cannot matter.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child; see above. errno values fit the 8-bit exit status.
        unsafe {
            let code = if libc::unshare(NSJAIL_NAMESPACES) == 0 {
                0
            } else {
                *libc::__errno_location() & 0xff
            };
            libc::_exit(code);
        }
    }
    match wait_for(pid)? {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// The child's exit code, retrying when a signal interrupts the wait.
fn wait_for(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(io::Error::other("the namespace probe was killed"))
    }
}

/// Why scripts cannot run, as `/health` and every `SANDBOX_ERROR` say it.
pub fn refusal_reason(error: &io::Error) -> String {
    format!(
        "user namespaces are refused on this platform ({error}), so nsjail cannot start; \
         the compat sandbox is required and is not available yet"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_answers_and_leaves_the_service_alone() {
        // Whatever this host allows, the probe must answer rather than hang or crash, and the
        // test process must stay in its own namespaces afterwards.
        let before = std::fs::read_link("/proc/self/ns/user").expect("own user namespace");
        let _ = probe();
        let after = std::fs::read_link("/proc/self/ns/user").expect("own user namespace");
        assert_eq!(before, after);
    }

    #[test]
    fn the_reason_says_what_is_needed() {
        let reason = refusal_reason(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(reason.contains("user namespaces are refused"), "{reason}");
        assert!(reason.contains("compat sandbox is required"), "{reason}");
    }
}
