//! The compat filter that hands every signal aimed at another process to the service, which
//! answers from outside the sandbox (seccomp user notification; `compat/signals.rs` serves it).
//! Without a PID namespace, only the service can tell whether a pid belongs to the sandbox: a
//! static filter cannot, and on Lambda the service's threads and the sandbox waiting for the
//! next caller share the script's uid, so the kernel's own permission check lets them through.

use std::os::fd::RawFd;

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpOp as Op, SeccompRule, TargetArch};

use super::{compile, condition, Rules, SeccompError};

/// The signal calls the service decides on. `kill(0, sig)`, the caller's own group, never
/// leaves the kernel; `tkill` and `pidfd_send_signal` are refused outright (see `rules.rs`).
pub const NOTIFIED_SIGNAL_CALLS: [i64; 4] = [
    libc::SYS_kill,
    libc::SYS_tgkill,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_tgsigqueueinfo,
];

/// `seccompiler` has no user-notification action: the program is compiled with a marked trace
/// action, and the marked returns rewritten.
const MARK: u32 = 0x5157;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const BPF_RET_K: u16 = 0x06;

pub fn program(arch: TargetArch) -> Result<BpfProgram, SeccompError> {
    let mut rules = Rules::new();
    for nr in NOTIFIED_SIGNAL_CALLS {
        let chain = if nr == libc::SYS_kill {
            vec![SeccompRule::new(vec![condition(0, Op::Ne, 0)?])?]
        } else {
            vec![]
        };
        rules.insert(nr, chain);
    }
    let mut program = compile(rules, SeccompAction::Trace(MARK), arch)?;
    for instruction in &mut program {
        if instruction.code == BPF_RET_K && instruction.k == SECCOMP_RET_TRACE | MARK {
            instruction.k = libc::SECCOMP_RET_USER_NOTIF;
        }
    }
    Ok(program)
}

/// Installs `program` and returns the listener the service answers on. Runs in the child
/// between fork and exec: only system calls.
pub fn install_with_listener(program: &BpfProgram) -> std::io::Result<RawFd> {
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        // seccompiler's sock_filter has the kernel's layout.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: seccomp(2) reads the program through a valid pointer for the call's duration.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd as RawFd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marked_return_becomes_a_notification() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("arch");
        let program = program(arch).expect("compiles");
        let returns: Vec<u32> = program
            .iter()
            .filter(|instruction| instruction.code == BPF_RET_K)
            .map(|instruction| instruction.k)
            .collect();
        assert!(returns.contains(&libc::SECCOMP_RET_USER_NOTIF));
        assert!(!returns.contains(&(SECCOMP_RET_TRACE | MARK)));
    }
}
