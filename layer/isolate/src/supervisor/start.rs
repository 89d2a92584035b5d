//! The program's start without a C library: `_start` takes the arguments from the stack the
//! kernel built, runs the supervisor and exits; plus the few memory routines compiled code
//! calls, which the C library would otherwise provide, and what a panic does (exit 70: the
//! harness's "the supervisor could not start").

use core::arch::global_asm;

use super::sys;

/// More than any mode takes (`supervise` and its five numbers).
const MOST_ARGUMENTS: usize = 8;

// The kernel starts a program with the stack pointer at argc, then the argv pointers. Keep the
// stack aligned as a call expects, and never return.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// # Safety
/// Called once, by `_start`, with the stack the kernel built for the program.
unsafe extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: the kernel's layout: argc, then argc pointers to NUL-terminated strings.
    let (count, argv) = unsafe { (*stack, stack.add(1) as *const *const u8) };
    let mut arguments: [&[u8]; MOST_ARGUMENTS] = [&[]; MOST_ARGUMENTS];
    // The program's own name is not an argument; more than fit is a usage error below.
    let taken = count.saturating_sub(1).min(MOST_ARGUMENTS);
    for (index, argument) in arguments.iter_mut().take(taken).enumerate() {
        // SAFETY: index + 1 < argc, so a valid C string.
        *argument = unsafe { c_string(*argv.add(index + 1)) };
    }
    if count.saturating_sub(1) > MOST_ARGUMENTS {
        sys::exit(super::USAGE)
    }
    super::main(&arguments[..taken])
}

/// # Safety
/// `start` points to a NUL-terminated string that lives as long as the program.
unsafe fn c_string(start: *const u8) -> &'static [u8] {
    let mut length = 0;
    // SAFETY: the caller's contract: every byte up to the NUL is readable. Volatile, so the
    // loop is not recognised as strlen, which there is no C library to provide.
    unsafe {
        while core::ptr::read_volatile(start.add(length)) != 0 {
            length += 1;
        }
        core::slice::from_raw_parts(start, length)
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::exit(super::USAGE)
}

// The routines the compiler emits calls to. Written with `rep` string instructions, so that the
// compiler cannot turn them back into calls to themselves.

#[no_mangle]
unsafe extern "C" fn memcpy(to: *mut u8, from: *const u8, count: usize) -> *mut u8 {
    // SAFETY: the caller's contract: two valid, non-overlapping regions of `count` bytes.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") count => _,
            inout("rdi") to => _,
            inout("rsi") from => _,
            options(nostack, preserves_flags),
        );
    }
    to
}

#[no_mangle]
unsafe extern "C" fn memmove(to: *mut u8, from: *const u8, count: usize) -> *mut u8 {
    if (to as usize) <= (from as usize) || (to as usize) >= (from as usize) + count {
        // SAFETY: a forward copy never overwrites a byte before reading it here.
        return unsafe { memcpy(to, from, count) };
    }
    // SAFETY: overlapping with `to` after `from`: copied backwards, from the last byte, with
    // the direction flag set for the copy only.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") count => _,
            inout("rdi") to.add(count - 1) => _,
            inout("rsi") from.add(count - 1) => _,
            options(nostack),
        );
    }
    to
}

#[no_mangle]
unsafe extern "C" fn memset(to: *mut u8, value: i32, count: usize) -> *mut u8 {
    // SAFETY: the caller's contract: a valid region of `count` bytes.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") count => _,
            inout("rdi") to => _,
            in("al") value as u8,
            options(nostack, preserves_flags),
        );
    }
    to
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, count: usize) -> i32 {
    for index in 0..count {
        // SAFETY: the caller's contract: two readable regions of `count` bytes. Volatile, so
        // the loop stays a loop and is not recognised as a call to this very function.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(index)),
                core::ptr::read_volatile(b.add(index)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, count: usize) -> i32 {
    // SAFETY: the same contract as memcmp's.
    unsafe { memcmp(a, b, count) }
}
