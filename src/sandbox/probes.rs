//! What start-up asks of the kernel before it chooses a sandbox, where the answer depends on the
//! sandbox's own machinery: Landlock's ABI, and whether the signal guard's filter (a seccomp
//! user notification) may be installed. Each probe that changes a process runs in a forked
//! child.

/// The Landlock ABI version the kernel offers (0: none).
pub fn landlock_abi() -> u32 {
    super::compat::landlock::kernel_abi()
}

/// Whether the signal guard's filter can be installed with a listener: some container runtimes'
/// own filters refuse `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub fn user_notification_works() -> bool {
    let Ok(program) = super::seccomp::signal_guard_program() else {
        return false;
    };
    // SAFETY: prctl with integer arguments, in the forked child only.
    probe_in_child(&|| unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && super::seccomp::install_with_listener(&program).is_ok()
    })
}

/// Runs `test` in a forked child and reports whether it succeeded. `test` runs between fork
/// and _exit in a copy of a multi-threaded process: it must only make system calls.
pub fn probe_in_child(test: &dyn Fn() -> bool) -> bool {
    // The orphan reaper must not collect this child before waitpid below does.
    let _reaper_held = super::live::lock();
    // SAFETY: the child only runs `test` (system calls on prepared data) and _exit.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(if test() { 0 } else { 1 });
        }
        if pid < 0 {
            return false;
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}
