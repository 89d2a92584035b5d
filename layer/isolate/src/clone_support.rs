//! The one clone both crate::split and crate::vfork make: a child sharing this process's
//! memory goes on, while the parent execs a program of ours, touching nothing in that memory on
//! the way, and the child can tell when it has.

use std::ffi::c_char;
use std::io;
use std::os::fd::RawFd;

/// Exit status of a parent whose exec failed (the child learns why through the watch).
const EXEC_FAILED: i32 = 127;

/// Offset of glibc's cached thread id in its thread descriptor (glibc 2.2x-2.3x, x86_64):
/// the child's is set by the kernel (`CLONE_CHILD_SETTID`), as glibc's fork does, so raise()
/// and abort() in the script's process signal itself. Used only where the word there holds
/// this thread's id.
#[cfg(target_arch = "x86_64")]
const GLIBC_TID_OFFSET: usize = 0x2d0;

/// A pipe, both ends close-on-exec.
fn cloexec_pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Blocks every signal; returns the mask to restore.
fn block_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset operations on local sets; sigprocmask on the calling (only) thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(previous)
    }
}

fn restore_signals(previous: &libc::sigset_t) {
    // SAFETY: restoring a mask saved by `block_signals`.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous, std::ptr::null_mut()) };
}

/// Where the kernel writes the child's thread id for glibc, when it can be found.
#[cfg(target_arch = "x86_64")]
fn glibc_tid_word() -> Option<*mut libc::pid_t> {
    // SAFETY: pthread_self() is glibc's thread descriptor, mapped and at least this large; the
    // word is only used where it holds this thread's id, which is what glibc keeps there.
    unsafe {
        let word = (libc::pthread_self() as *mut u8)
            .add(GLIBC_TID_OFFSET)
            .cast::<libc::pid_t>();
        (word.read() == libc::gettid()).then_some(word)
    }
}

/// What the parent execs after the clone: pointers the kernel reads at execve, which must stay
/// valid until the exec watch reaches end of file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exec {
    pub path: *const c_char,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
}

/// Clones a child that shares this process's memory (`CLONE_VM | extra_flags`, on the current
/// stack) and goes on from here, while the parent execs `exec`. Returns in the child only, with
/// the read end of the exec watch: a pipe whose write end only the parent holds
/// (close-on-exec), at end of file once it has exec'd, or with its exec's errno first if that
/// failed (it then exits with status 127). Signals are blocked around the clone (a handler in
/// the parent would run on the stack the child uses) and restored in the child.
pub(crate) fn clone_then_exec(extra_flags: libc::c_int, exec: Exec) -> io::Result<RawFd> {
    let (watch_read, watch_write) = cloexec_pipe()?;
    let previous = block_signals()?;
    // SAFETY: the harness is single-threaded and holds no lock here; signals are blocked; the
    // callers keep `exec`'s pointers valid until the watch's end of file.
    let result = unsafe { clone_sharing_memory(extra_flags, exec, watch_write) };
    restore_signals(&previous);
    // SAFETY: this process's copy of the write end; the exec'ing parent holds its own.
    unsafe { libc::close(watch_write) };
    if result < 0 {
        // SAFETY: no child was made; the read end is this process's alone.
        unsafe { libc::close(watch_read) };
        return Err(io::Error::from_raw_os_error(-result as i32));
    }
    Ok(watch_read)
}

/// Reads an exec watch to its end: `Some(errno)` when the exec'ing parent wrote why its exec
/// failed.
pub(crate) fn wait_for_exec(watch: RawFd) -> Option<i32> {
    let mut word = [0u8; 4];
    let mut got = 0;
    loop {
        // SAFETY: reading into the rest of a local buffer.
        let count = unsafe { libc::read(watch, word[got..].as_mut_ptr().cast(), word.len() - got) };
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

/// clone(CLONE_VM | extra_flags | SIGCHLD) on the current stack, the child's thread id set
/// where glibc keeps it (as glibc's fork sets it). Returns 0 in the child, or a negative errno
/// when no child was made. The parent never returns, and runs no code of ours in the shared
/// memory again: in assembly that uses registers only (the kernel keeps them across a
/// CLONE_VFORK suspension), it forgets glibc's words there (the kernel would zero the thread-id
/// word, clear_child_tid, and walk the robust-futex list at exec, and both are the child's),
/// execs, or else writes the exec's errno to `watch` and exits with 127.
///
/// # Safety
/// As [`clone_then_exec`] says of its caller.
#[cfg(target_arch = "x86_64")]
unsafe fn clone_sharing_memory(extra_flags: libc::c_int, exec: Exec, watch: RawFd) -> i64 {
    static mut EXEC_ERROR: i32 = 0;
    let (settid, child_tid) = match glibc_tid_word() {
        Some(word) => (libc::CLONE_CHILD_SETTID, word),
        None => (0, std::ptr::null_mut()),
    };
    let flags = (libc::CLONE_VM | extra_flags | settid | libc::SIGCHLD) as i64;
    let result: i64;
    // SAFETY: the caller's promise. The parent's path after `syscall` uses registers and the
    // static error word only, and ends in execve or exit_group.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jle 2f",
            "xor edi, edi",
            "mov eax, 218", // set_tid_address(NULL)
            "syscall",
            "xor edi, edi",
            "mov esi, 24",
            "mov eax, 273", // set_robust_list(NULL, 24)
            "syscall",
            "mov rdi, r12",
            "mov rsi, r13",
            "mov rdx, r14",
            "mov eax, 59", // execve
            "syscall",
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
            in("r15") watch as i64,
            out("rcx") _,
            out("r11") _,
        );
    }
    result
}

/// Elsewhere there is no such path: report it, and the caller forks.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_sharing_memory(_extra_flags: libc::c_int, _exec: Exec, _watch: RawFd) -> i64 {
    -(libc::ENOSYS as i64)
}
