//! Entering a new PID namespace without copying the template's memory a second time.
//!
//! A new PID namespace applies to children only, so the process that made it must have one. A
//! fork would copy the whole address space (a pandas-loaded template's page tables) and tear it
//! down again at exit: a third of an execution's CPU under load. Instead the child shares this
//! process's memory (`CLONE_VM | CLONE_VFORK`) and goes on as the execution, while this process
//! stays suspended in the kernel until the child has exited, then reaps it and exits as it did.
//! The child is a vfork child that never execs: it owns the one address space from then on,
//! and its parent never runs user code again (nor touches its stack, which the child has reused:
//! everything after the clone in the parent is the assembly below, with no stack).

use std::io;

/// Where the suspended parent receives its child's wait status: static memory, since its stack
/// is the child's by then.
static mut CHILD_STATUS: i32 = 0;

/// Continues the calling process as the first process of the PID namespace it has made
/// (`unshare(CLONE_NEWPID)` before): returns in the new process only. Signals are blocked
/// around the clone (the parent must never run a handler on the child's stack) and unblocked
/// again in the child.
pub fn continue_in_child() -> io::Result<()> {
    // SAFETY: sigset operations on local sets; sigprocmask on the calling (only) thread.
    let previous = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        previous
    };
    // SAFETY: see `clone_sharing_memory`; only the child returns.
    let result = unsafe { clone_sharing_memory() };
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    if result < 0 {
        return Err(io::Error::from_raw_os_error(-result as i32));
    }
    Ok(())
}

/// clone(CLONE_VM | CLONE_VFORK | SIGCHLD) on the current stack. Returns 0 in the child, or a
/// negative errno when no child was made; the parent never returns: once the child has exited
/// (which ends the vfork), it waits for it and exits with its code, or 128 + the signal that
/// killed it, as a shell reports it.
///
/// # Safety
/// The caller must be single-threaded and hold no lock the child could need; signals must be
/// blocked (a handler would run on the stack the child reused).
#[cfg(target_arch = "x86_64")]
unsafe fn clone_sharing_memory() -> i64 {
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as i64;
    let result: i64;
    // SAFETY: the caller's promise. The parent's path after `syscall` uses registers and the
    // static status word only, and ends in exit_group.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jle 2f",
            // The parent, resumed once the child has exited: wait4(child, &status, __WALL).
            "mov rdi, rax",
            "lea rsi, [rip + {status}]",
            "mov edx, 0x40000000",
            "xor r10d, r10d",
            "mov eax, 61",
            "syscall",
            "mov eax, dword ptr [rip + {status}]",
            "mov edi, eax",
            "and edi, 0x7f",
            "jz 3f",
            "add edi, 128",
            "jmp 4f",
            "3:",
            "mov edi, eax",
            "shr edi, 8",
            "and edi, 0xff",
            "4:",
            "mov eax, 231",
            "syscall",
            "ud2",
            "2:",
            status = sym CHILD_STATUS,
            inlateout("rax") libc::SYS_clone => result,
            inlateout("rdi") flags => _,
            inlateout("rsi") 0i64 => _,
            inlateout("rdx") 0i64 => _,
            inlateout("r10") 0i64 => _,
            inlateout("r8") 0i64 => _,
            out("rcx") _,
            out("r11") _,
        );
    }
    result
}

/// Elsewhere there is no such path: report it, and the caller forks as before.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_sharing_memory() -> i64 {
    -(libc::ENOSYS as i64)
}
