//! The Linux system calls the supervisor makes, raw (x86_64): it runs without a C library.
//! glibc's start-up alone (its CPU-feature and cache probing executes `cpuid` dozens of times,
//! and each one traps to the hypervisor in a VM) cost about 0.4 ms of CPU per exec here, more
//! than everything the supervisor itself does, and it is exec'd once or twice per execution.
//!
//! Each call returns the kernel's answer: a count or a value, or `-errno`.

use core::arch::asm;

pub type Fd = i32;
pub type Pid = i32;

pub const EINTR: isize = 4;
pub const SIGKILL: i32 = 9;
pub const POLLIN: i16 = 0x1;
const O_RDWR: usize = 0o2;
const O_RDONLY: usize = 0;
const O_NONBLOCK: usize = 0o4000;
const O_CLOEXEC: usize = 0o2000000;
const AT_FDCWD: isize = -100;
const F_GETFL: usize = 3;
const F_SETFL: usize = 4;
const F_SETPIPE_SZ: usize = 1031;
const PR_SET_DUMPABLE: usize = 4;
const SIG_SETMASK: usize = 2;
const WNOHANG: usize = 1;
const WEXITED: usize = 4;
const WNOWAIT: usize = 0x0100_0000;
/// Waits for children of any kind (clone children included), as `__WALL` does.
pub const WALL: usize = 0x4000_0000;
const P_PID: usize = 1;

mod number {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const POLL: usize = 7;
    pub const MMAP: usize = 9;
    pub const MUNMAP: usize = 11;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const MREMAP: usize = 25;
    pub const DUP2: usize = 33;
    pub const NANOSLEEP: usize = 35;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const FCNTL: usize = 72;
    pub const PRCTL: usize = 157;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const WAITID: usize = 247;
    pub const OPENAT: usize = 257;
    pub const PIDFD_OPEN: usize = 434;
}

/// One system call with up to five arguments.
///
/// # Safety
/// The arguments must be what the call `number` expects: pointers valid for what it does.
unsafe fn call(number: usize, args: [usize; 5]) -> isize {
    let result: isize;
    // SAFETY: the caller's contract; the syscall instruction clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// `pollfd`
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PollFd {
    pub fd: Fd,
    pub events: i16,
    pub revents: i16,
}

/// `timespec` and `timeval` share this shape on x86_64 (two 64-bit words).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Time {
    pub seconds: i64,
    pub fraction: i64,
}

/// `struct rusage`: the two times, then fourteen counters nobody here reads.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Usage {
    pub user: Time,
    pub system: Time,
    _counters: [i64; 14],
}

pub fn read(fd: Fd, buffer: &mut [u8]) -> isize {
    let args = [
        fd as usize,
        buffer.as_mut_ptr() as usize,
        buffer.len(),
        0,
        0,
    ];
    // SAFETY: the buffer is live and writable for its length.
    unsafe { call(number::READ, args) }
}

pub fn write(fd: Fd, bytes: &[u8]) -> isize {
    let args = [fd as usize, bytes.as_ptr() as usize, bytes.len(), 0, 0];
    // SAFETY: the bytes are live for their length.
    unsafe { call(number::WRITE, args) }
}

pub fn close(fd: Fd) {
    // SAFETY: integer arguments.
    unsafe { call(number::CLOSE, [fd as usize, 0, 0, 0, 0]) };
}

/// Opens `path`, which must end with a NUL byte; read-write, or read-only.
pub fn open(path: &[u8], writable: bool) -> isize {
    if path.last() != Some(&0) {
        return -22;
    }
    let mode = if writable { O_RDWR } else { O_RDONLY };
    let args = [
        AT_FDCWD as usize,
        path.as_ptr() as usize,
        mode | O_CLOEXEC,
        0,
        0,
    ];
    // SAFETY: a NUL-terminated path, live for the call.
    unsafe { call(number::OPENAT, args) }
}

pub fn dup2(from: Fd, to: Fd) {
    // SAFETY: integer arguments.
    unsafe { call(number::DUP2, [from as usize, to as usize, 0, 0, 0]) };
}

pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> isize {
    let args = [
        fds.as_mut_ptr() as usize,
        fds.len(),
        timeout_ms as usize,
        0,
        0,
    ];
    // SAFETY: an array of pollfds, live and writable for its length.
    unsafe { call(number::POLL, args) }
}

pub fn set_nonblocking(fd: Fd) {
    // SAFETY: integer arguments.
    unsafe {
        let flags = call(number::FCNTL, [fd as usize, F_GETFL, 0, 0, 0]);
        if flags >= 0 {
            call(
                number::FCNTL,
                [fd as usize, F_SETFL, flags as usize | O_NONBLOCK, 0, 0],
            );
        }
    }
}

/// Asks the kernel to grow a pipe to `bytes`; a refusal leaves it as it was.
pub fn grow_pipe(fd: Fd, bytes: usize) {
    // SAFETY: integer arguments.
    unsafe { call(number::FCNTL, [fd as usize, F_SETPIPE_SZ, bytes, 0, 0]) };
}

pub fn kill(pid: Pid, signal: i32) {
    // SAFETY: integer arguments.
    unsafe { call(number::KILL, [pid as usize, signal as usize, 0, 0, 0]) };
}

pub fn pidfd_open(pid: Pid) -> isize {
    // SAFETY: integer arguments.
    unsafe { call(number::PIDFD_OPEN, [pid as usize, 0, 0, 0, 0]) }
}

/// Whether `pid` has exited (or cannot be waited for), leaving it waitable.
pub fn has_exited(pid: Pid) -> bool {
    // A siginfo_t is 128 bytes; for a child's state change its si_pid is the fifth word.
    let mut info = [0i32; 32];
    let args = [
        P_PID,
        pid as usize,
        info.as_mut_ptr() as usize,
        WEXITED | WNOHANG | WNOWAIT,
        0,
    ];
    // SAFETY: a zeroed siginfo-sized buffer, live for the call.
    let result = unsafe { call(number::WAITID, args) };
    result < 0 || info[4] != 0
}

/// Waits for `pid` (-1: any child): the pid reaped, or `-errno`.
pub fn wait4(pid: Pid, status: &mut i32, usage: &mut Usage) -> isize {
    let args = [
        pid as usize,
        status as *mut i32 as usize,
        WALL,
        usage as *mut Usage as usize,
        0,
    ];
    // SAFETY: a status word and a rusage, live and writable.
    unsafe { call(number::WAIT4, args) }
}

pub fn clock_gettime(clock: i32, now: &mut Time) -> isize {
    let args = [clock as usize, now as *mut Time as usize, 0, 0, 0];
    // SAFETY: a timespec, live and writable.
    unsafe { call(number::CLOCK_GETTIME, args) }
}

pub fn sleep_ms(ms: u64) {
    let pause = Time {
        seconds: (ms / 1000) as i64,
        fraction: ((ms % 1000) * 1_000_000) as i64,
    };
    // SAFETY: a timespec, live for the call; no remainder asked for.
    unsafe {
        call(
            number::NANOSLEEP,
            [&pause as *const Time as usize, 0, 0, 0, 0],
        )
    };
}

pub fn not_dumpable() {
    // SAFETY: integer arguments.
    unsafe { call(number::PRCTL, [PR_SET_DUMPABLE, 0, 0, 0, 0]) };
}

/// Unblocks every signal (exec keeps the mask its caller had).
pub fn unblock_signals() {
    let none = 0u64;
    let args = [SIG_SETMASK, &none as *const u64 as usize, 0, 8, 0];
    // SAFETY: an empty 64-bit signal set, live for the call.
    unsafe { call(number::RT_SIGPROCMASK, args) };
}

/// A write to a pipe nobody reads fails with EPIPE instead of killing this process (what the
/// standard library's start-up sets for every Rust program).
pub fn ignore_broken_pipes() {
    const SIGPIPE: usize = 13;
    const SIG_IGN: usize = 1;
    // The kernel's struct sigaction on x86_64: handler, flags, restorer, mask.
    let ignore: [usize; 4] = [SIG_IGN, 0, 0, 0];
    let args = [SIGPIPE, ignore.as_ptr() as usize, 0, 8, 0];
    // SAFETY: a kernel sigaction, live for the call; no old action asked for.
    unsafe { call(number::RT_SIGACTION, args) };
}

pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: integer arguments; exit_group does not return.
        unsafe { call(number::EXIT_GROUP, [code as usize, 0, 0, 0, 0]) };
    }
}

/// A fresh private anonymous mapping of `bytes`: its address, or `-errno`.
pub fn map(bytes: usize) -> isize {
    const PROT_READ_WRITE: usize = 0x1 | 0x2;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x02 | 0x20;
    // mmap is the one call here with a sixth argument (the offset, 0), in r9.
    let result: isize;
    // SAFETY: a new mapping; nothing existing is touched.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number::MMAP as isize => result,
            in("rdi") 0usize,
            in("rsi") bytes,
            in("rdx") PROT_READ_WRITE,
            in("r10") MAP_PRIVATE_ANONYMOUS,
            in("r8") -1isize,
            in("r9") 0usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// Grows (or moves) a mapping made by [`map`]: its new address, or `-errno`.
///
/// # Safety
/// `address` and `old` must be a mapping of this process's that nothing else refers to.
pub unsafe fn remap(address: usize, old: usize, new: usize) -> isize {
    const MREMAP_MAYMOVE: usize = 1;
    // SAFETY: the caller's contract.
    unsafe { call(number::MREMAP, [address, old, new, MREMAP_MAYMOVE, 0]) }
}

/// # Safety
/// `address` and `bytes` must be a mapping of this process's that nothing refers to any more.
pub unsafe fn unmap(address: usize, bytes: usize) {
    // SAFETY: the caller's contract.
    unsafe { call(number::MUNMAP, [address, bytes, 0, 0, 0]) };
}
