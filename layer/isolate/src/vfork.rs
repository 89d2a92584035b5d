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
//! This process must never run its own code again once it has woken: its memory is the
//! script's from then on (the script's process shares it), and a script could have rewritten
//! anything there. So everything after the clone in the parent is the assembly below, with no
//! stack and no memory but what the kernel reads for execve, prepared before the clone and
//! leaked (nothing frees it); and the script's process runs nothing of its own until this
//! process's exec closed its copy of [`exec_watch`]'s pipe.

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::RawFd;
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
/// (`unshare(CLONE_NEWPID)` before): returns in the new process only. The parent execs
/// `waiter` once woken. Signals are blocked around the clone (the parent must never run a
/// handler on the child's stack) and unblocked again in the child.
pub fn continue_in_child(waiter: &CString) -> io::Result<()> {
    let exec = ExecArguments::leaked(waiter);
    let (watch_read, watch_write) = crate::clone_support::cloexec_pipe()?;
    let previous = crate::clone_support::block_signals()?;
    // SAFETY: see `clone_sharing_memory`; only the child returns.
    let result = unsafe { clone_sharing_memory(exec) };
    crate::clone_support::restore_signals(&previous);
    // SAFETY: closing this process's (the child's, or the failed caller's) copy of the write
    // end: only the suspended parent's copy keeps the pipe open.
    unsafe { libc::close(watch_write) };
    if result < 0 {
        // SAFETY: no child: the read end is this process's alone.
        unsafe { libc::close(watch_read) };
        return Err(io::Error::from_raw_os_error(-result as i32));
    }
    PARENT_EXEC_WATCH.store(watch_read, Ordering::SeqCst);
    Ok(())
}

/// execve's path, argv and envp, leaked: the woken parent reads them after the child may have
/// freed anything it owned.
#[derive(Clone, Copy)]
struct ExecArguments {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
}

impl ExecArguments {
    fn leaked(waiter: &CString) -> Self {
        let path = waiter.clone().into_raw().cast_const();
        let mode = CString::from(c"wait").into_raw().cast_const();
        let argv: &'static [*const c_char] = Box::leak(Box::new([path, mode, std::ptr::null()]));
        let envp: &'static [*const c_char] = Box::leak(Box::new([std::ptr::null()]));
        Self {
            path,
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
        }
    }
}

/// clone(CLONE_VM | CLONE_VFORK | SIGCHLD) on the current stack. Returns 0 in the child, or a
/// negative errno when no child was made; the parent never returns: once the child has
/// exec'd or exited (which ends the vfork), it execs the waiter, or exits with status 71
/// (the harness's "isolation failed") if it cannot.
///
/// # Safety
/// The caller must be single-threaded and hold no lock the child could need; signals must be
/// blocked (a handler would run on the stack the child reused).
#[cfg(target_arch = "x86_64")]
unsafe fn clone_sharing_memory(exec: ExecArguments) -> i64 {
    let (settid, child_tid) = crate::clone_support::child_tid_for_glibc();
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | settid | libc::SIGCHLD) as i64;
    let result: i64;
    // SAFETY: the caller's promise. The parent's path after `syscall` uses registers only (the
    // kernel keeps them across the suspension) and ends in execve or exit_group.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jle 2f",
            crate::clone_support::exec_from_registers!(),
            "mov edi, 71",
            "mov eax, 231",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone => result,
            inlateout("rdi") flags => _,
            inlateout("rsi") 0i64 => _,
            inlateout("rdx") 0i64 => _,
            inlateout("r10") child_tid => _,
            inlateout("r8") 0i64 => _,
            in("r12") exec.path,
            in("r13") exec.argv,
            in("r14") exec.envp,
            out("rcx") _,
            out("r11") _,
        );
    }
    result
}

/// Elsewhere there is no such path: report it, and the caller forks as before.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_sharing_memory(_exec: ExecArguments) -> i64 {
    -(libc::ENOSYS as i64)
}
