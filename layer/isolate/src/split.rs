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
use std::os::fd::RawFd;

/// Exit status of a parent whose exec failed (the child learns why through the pipe).
const EXEC_FAILED: i32 = 127;

/// Splits the calling process: returns in the child (the script's process) once the parent
/// has exec'd `argv[0]` with `argv`. Err(ENOSYS) where there is no such path (the caller
/// forks); other errors as the clone or the exec gave them (EAGAIN: the process limit).
pub fn split(argv: &[CString]) -> io::Result<()> {
    let mut pointers: Vec<*const c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let envp: [*const c_char; 1] = [std::ptr::null()];
    let (watch_read, watch_write) = crate::clone_support::cloexec_pipe()?;
    let previous = crate::clone_support::block_signals()?;
    let exec = Exec {
        path: pointers[0],
        argv: pointers.as_ptr(),
        envp: envp.as_ptr(),
        watch: watch_write,
    };
    // SAFETY: single-threaded caller (the harness), signals blocked; see `clone_then_exec`.
    let result = unsafe { clone_then_exec(exec) };
    crate::clone_support::restore_signals(&previous);
    // SAFETY: this process's copy of the write end; the exec'ing parent holds its own.
    unsafe { libc::close(watch_write) };
    if result < 0 {
        // SAFETY: no child was made; the read end is ours alone.
        unsafe { libc::close(watch_read) };
        return Err(io::Error::from_raw_os_error(-result as i32));
    }
    let exec_error = wait_for_end_of_file(watch_read);
    // SAFETY: closing the read end this function opened.
    unsafe { libc::close(watch_read) };
    // A parent suspended around a new PID namespace (crate::vfork) execs too: its memory is
    // this one as well.
    if let Some(parent_watch) = crate::vfork::exec_watch() {
        let _ = wait_for_end_of_file(parent_watch);
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

/// What the parent needs after the clone, in registers.
struct Exec {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    watch: RawFd,
}

/// Reads `fd` to its end: `Some(errno)` when the exec'ing parent wrote why its exec failed.
fn wait_for_end_of_file(fd: RawFd) -> Option<i32> {
    let mut word = [0u8; 4];
    let mut got = 0;
    loop {
        // SAFETY: reading into the rest of a local buffer.
        let count = unsafe { libc::read(fd, word[got..].as_mut_ptr().cast(), word.len() - got) };
        match count {
            0 => break,
            count if count > 0 => {
                got += count as usize;
                if got == word.len() {
                    break;
                }
            }
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => break,
        }
    }
    (got == word.len()).then(|| i32::from_ne_bytes(word))
}

/// clone(CLONE_VM | SIGCHLD) on the current stack. Returns 0 in the child, or a negative errno
/// when no child was made; the parent never returns: it execs, or writes the exec's errno to
/// the watch pipe and exits.
///
/// # Safety
/// The caller must be single-threaded and hold no lock the child could need; signals must be
/// blocked (a handler in the parent would run on the stack the child is using); `exec`'s
/// pointers must stay valid until the watch pipe reaches end of file.
#[cfg(target_arch = "x86_64")]
unsafe fn clone_then_exec(exec: Exec) -> i64 {
    static mut EXEC_ERROR: i32 = 0;
    let (settid, child_tid) = crate::clone_support::child_tid_for_glibc();
    let flags = (libc::CLONE_VM | settid | libc::SIGCHLD) as i64;
    let result: i64;
    // SAFETY: the caller's promise. The parent's path after `syscall` uses registers and the
    // static error word only, and ends in execve or exit_group.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jle 2f",
            crate::clone_support::exec_from_registers!(),
            "neg eax",
            "mov dword ptr [rip + {error}], eax",
            "mov edi, r15d",
            "lea rsi, [rip + {error}]",
            "mov edx, 4",
            "mov eax, 1",
            "syscall",
            "mov edi, {failed}",
            "mov eax, 231",
            "syscall",
            "ud2",
            "2:",
            error = sym EXEC_ERROR,
            failed = const EXEC_FAILED,
            inlateout("rax") libc::SYS_clone => result,
            inlateout("rdi") flags => _,
            inlateout("rsi") 0i64 => _,
            inlateout("rdx") 0i64 => _,
            inlateout("r10") child_tid => _,
            inlateout("r8") 0i64 => _,
            in("r12") exec.path,
            in("r13") exec.argv,
            in("r14") exec.envp,
            in("r15") exec.watch as i64,
            out("rcx") _,
            out("r11") _,
        );
    }
    result
}

/// Elsewhere there is no such path: report it, and the caller forks.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_then_exec(_exec: Exec) -> i64 {
    -(libc::ENOSYS as i64)
}
