//! The x32 guard: every x32 system call is refused with ENOSYS, as on a kernel built without
//! x32 (Lambda's, this machine's at boot). x32 calls are the x86_64 numbers with bit 30 set and
//! pass the x86_64 architecture check, so without this guard each denial would need an alias
//! under its x32 number (and x32's own entry points, such as its ioctl, besides). One range test
//! closes them all; `seccompiler` cannot express it, so the program is written by hand.

use seccompiler::{sock_filter, BpfProgram};

#[cfg(target_arch = "x86_64")]
pub fn guard() -> Option<BpfProgram> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const ARCH_OFFSET: u32 = 4; // offsetof(struct seccomp_data, arch)
    const NR_OFFSET: u32 = 0; // offsetof(struct seccomp_data, nr)
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ERRNO_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    Some(vec![
        op(LD_W_ABS, 0, 0, ARCH_OFFSET),
        // Another architecture's calls are the errno filters' business (they refuse them).
        op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        op(LD_W_ABS, 0, 0, NR_OFFSET),
        op(JSET_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, RET_ERRNO_ENOSYS),
        op(RET_K, 0, 0, RET_ALLOW),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
pub fn guard() -> Option<BpfProgram> {
    None
}
