//! Entering a new PID namespace without copying the template's memory a second time.
//!
//! A new PID namespace applies to children only, so the process that made it must have one. A
//! fork would copy the whole address space (a pandas-loaded template's page tables) and tear it
//! down again at exit. Instead the child shares this process's memory (`CLONE_VM |
//! CLONE_VFORK`) and goes on as the execution, while this process stays suspended in the kernel
//! until the child execs (it becomes the execution's supervisor, [`crate::split`]) or exits.
//! Then this process execs the waiter (`pyexec-supervise wait`), which reaps the child and
//! exits as it did: the service watches this process as the execution's first.
//!
//!  This process must never run its own code again once it has woken: its memory is the
//! script's from then on (the script's process shares it), and a script could have rewritten
//! anything there. So everything after the clone in the parent is assembly
//! (crate::clone_support) with no  stack and no memory but what the kernel reads for execve,
//! prepared before the clone and  leaked (nothing frees it); and the script's process runs
//! nothing of its own until this  process's exec closed its copy of [`exec_watch`]'s pipe.

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::RawFd;

use crate::clone_support::{clone_then_exec, Exec};
use std::sync::atomic::{AtomicI32, Ordering};

/// The read end of a pipe whose write end only the suspended parent holds (close-on-exec):
/// end of file once it has exec'd the waiter or died. -1 when there is no such parent.
static PARENT_EXEC_WATCH: AtomicI32 = AtomicI32::new(-1);

/// The read end of the suspended parent's exec watch, taken (the caller closes it), or `None`
/// outside a new PID namespace.
pub fn exec_watch() -> Option<RawFd> {
    let fd = PARENT_EXEC_WATCH.swap(-1, Ordering::SeqCst);
    (fd >= 0).then_some(fd)
}

/// Continues the calling process as the first process of the PID namespace it has made
/// (`unshare(CLONE_NEWPID)` before): returns in the new process only. The parent, suspended
/// until the child execs or exits (CLONE_VFORK), then execs `waiter`.
pub fn continue_in_child(waiter: &CString) -> io::Result<()> {
    let watch = clone_then_exec(libc::CLONE_VFORK, leaked_exec(waiter))?;
    PARENT_EXEC_WATCH.store(watch, Ordering::SeqCst);
    Ok(())
}

/// `waiter wait`, leaked: the woken parent's execve reads it after the child may have freed
/// anything it owned.
fn leaked_exec(waiter: &CString) -> Exec {
    let path = waiter.clone().into_raw().cast_const();
    let mode = CString::from(c"wait").into_raw().cast_const();
    let argv: &'static [*const c_char] = Box::leak(Box::new([path, mode, std::ptr::null()]));
    let envp: &'static [*const c_char] = Box::leak(Box::new([std::ptr::null()]));
    Exec {
        path,
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
    }
}
