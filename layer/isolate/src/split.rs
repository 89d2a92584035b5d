//! Splitting an execution into its supervisor and the script's process with one copy of the
//! template's memory, not two.
//!
//! The supervisor must be the script's parent (it reaps it: how the script ended is its word,
//! never the script's) and must share nothing a script could rewrite. A fork gave it a copy
//! of the whole pandas-loaded address space, only to run a small loop in it and tear it down
//! again: a third of an execution's CPU under load. Here the child shares this process's
//! memory (`CLONE_VM`, on the same stack) and goes on as the script's process, while the
//! parent, touching nothing but registers, execs the supervisor (`pyexec-supervise`), which
//! gets an address space of its own. The child waits until that exec has happened (a
//! close-on-exec pipe reaches end of file) before it returns, so the parent's execve never
//! reads arguments the child has since freed, and no user code ever runs while the parent
//! still executes in the shared memory.

use std::ffi::{c_char, CString};
use std::io;

use crate::clone_support::{clone_then_exec, wait_for_exec, Exec};

/// Splits the calling process: returns in the child (the script's process) once the parent
/// has exec'd `argv[0]` with `argv`. Err(ENOSYS) where there is no such path (the caller
/// forks); other errors as the clone or the exec gave them (EAGAIN: the process limit).
pub fn split(argv: &[CString]) -> io::Result<()> {
    let mut pointers: Vec<*const c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let envp: [*const c_char; 1] = [std::ptr::null()];
    let exec = Exec {
        path: pointers[0],
        argv: pointers.as_ptr(),
        envp: envp.as_ptr(),
    };
    let watch = clone_then_exec(0, exec)?;
    let exec_error = wait_for_exec(watch);
    // SAFETY: closing the watch clone_then_exec handed over.
    unsafe { libc::close(watch) };
    // A parent suspended around a new PID namespace (crate::vfork) execs too: its memory is
    // this one as well.
    if let Some(parent_watch) = crate::vfork::exec_watch() {
        let _ = wait_for_exec(parent_watch);
        // SAFETY: the read end handed over by crate::vfork.
        unsafe { libc::close(parent_watch) };
    }
    // `pointers` and `envp` live until here: the exec has read them.
    drop(pointers);
    match exec_error {
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => Ok(()),
    }
}
