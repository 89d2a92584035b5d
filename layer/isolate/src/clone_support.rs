//! What the two clones sharing memory (crate::split and crate::vfork) both need: signals
//! blocked around the clone, a close-on-exec pipe to watch an exec, glibc's thread-id word set
//! for the child, and the parent's assembly path to exec.

use std::io;
use std::os::fd::RawFd;

/// Offset of glibc's cached thread id in its thread descriptor (glibc 2.2x-2.3x, x86_64):
/// the child's is set by the kernel (`CLONE_CHILD_SETTID`), as glibc's fork does, so raise()
/// and abort() in the script's process signal itself. Used only where the word there holds
/// this thread's id.
#[cfg(target_arch = "x86_64")]
const GLIBC_TID_OFFSET: usize = 0x2d0;

/// A pipe, both ends close-on-exec.
pub(crate) fn cloexec_pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Blocks every signal; returns the mask to restore.
pub(crate) fn block_signals() -> io::Result<libc::sigset_t> {
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

pub(crate) fn restore_signals(previous: &libc::sigset_t) {
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

/// The parent's side of a clone sharing memory, in assembly that uses registers only: forgets
/// glibc's words in the shared memory (the kernel would zero the thread-id word,
/// clear_child_tid, and walk the robust-futex list there at exec, and both are the child's),
/// then execve(r12, r13, r14). Falls through when the exec failed.
#[cfg(target_arch = "x86_64")]
macro_rules! exec_from_registers {
    () => {
        concat!(
            "xor edi, edi\n",
            "mov eax, 218\n", // set_tid_address(NULL)
            "syscall\n",
            "xor edi, edi\n",
            "mov esi, 24\n",
            "mov eax, 273\n", // set_robust_list(NULL, 24)
            "syscall\n",
            "mov rdi, r12\n",
            "mov rsi, r13\n",
            "mov rdx, r14\n",
            "mov eax, 59\n", // execve
            "syscall\n",
        )
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use exec_from_registers;

/// CLONE_CHILD_SETTID and where, so the child's thread id is where glibc keeps it, as glibc's
/// fork sets it; nothing where that word cannot be found.
#[cfg(target_arch = "x86_64")]
pub(crate) fn child_tid_for_glibc() -> (libc::c_int, *mut libc::pid_t) {
    match glibc_tid_word() {
        Some(word) => (libc::CLONE_CHILD_SETTID, word),
        None => (0, std::ptr::null_mut()),
    }
}
