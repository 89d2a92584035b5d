//! The system-call policy both sandboxes enforce, as data: which calls are refused, with which
//! errno, and under which arguments. nsjail's harness and compat's child install the very same
//! programs compiled from these tables (see the module above), so the two cannot drift.
//!
//! Denials answer with an errno rather than killing, so Python raises a clean `OSError` the
//! script can report. Every x32 system call is refused by a separate guard (`x32.rs`).

use seccompiler::{SeccompCmpOp as Op, SeccompRule};

use super::{condition, Rules, SeccompError};

/// CLONE_NEW* flags: new namespaces are where most unprivileged kernel exploits start.
const CLONE_NAMESPACE_FLAGS: [i32; 8] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    0x80, // CLONE_NEWTIME, not in every libc
];

/// `which` values of setpriority and ioprio_set that name every process of a user: on Lambda,
/// the service and the sandboxes waiting for the next caller share the script's uid.
const PRIO_USER: u64 = 2;
const IOPRIO_WHO_USER: u64 = 3;

/// fcntl commands that make the kernel signal another process (SIGIO/SIGURG on I/O readiness).
const FCNTL_SIGNAL_ROUTES: [u64; 3] = [
    libc::F_SETOWN as u64,
    10, // F_SETSIG
    15, // F_SETOWN_EX
];
/// The ioctl spellings of F_SETOWN for sockets.
const IOCTL_SIGNAL_ROUTES: [u64; 2] = [0x8901 /* FIOSETOWN */, 0x8902 /* SIOCSPGRP */];

/// The seeds promise "socket returns EACCES": every family but AF_UNIX, which local IPC
/// (multiprocessing) needs and which reaches nothing outside the sandbox's own processes.
/// socketpair is held to the same rule, so exotic families (TIPC, RDS, VSOCK...) are refused
/// here rather than reached in the kernel.
pub fn eacces() -> Result<Rules, SeccompError> {
    let not_unix = || -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![SeccompRule::new(vec![condition(
            0,
            Op::Ne,
            libc::AF_UNIX as u64,
        )?])?])
    };
    Ok(Rules::from([
        (libc::SYS_socket, not_unix()?),
        (libc::SYS_socketpair, not_unix()?),
    ]))
}

/// clone3 passes its flags in memory seccomp cannot read; ENOSYS makes glibc fall back to
/// clone(), whose flags are checked.
pub fn enosys() -> Rules {
    Rules::from([(libc::SYS_clone3, vec![])])
}

/// Refused with EPERM: the kernel attack surface, and every way to reach another process.
pub fn eperm() -> Result<Rules, SeccompError> {
    let mut rules: Rules = ALWAYS_DENIED
        .iter()
        .chain(PORT_IO)
        .map(|&nr| (nr, vec![]))
        .collect();
    rules.insert(libc::SYS_clone, namespace_clone()?);
    rules.extend(other_processes()?);
    Ok(rules)
}

/// What a template may not do: everything a script may not, but what its children must still
/// do to isolate themselves under the filter they inherit: a session of their own, and, with
/// `namespaces`, new namespaces and their mounts. With `uids`, identity changes go only into
/// that range (a template keeps CAP_SETUID to switch each child to its execution's uid; the
/// filter keeps the capability from reaching root's, or anyone else's, files).
pub fn eperm_for_template(
    namespaces: bool,
    uids: Option<std::ops::Range<u32>>,
) -> Result<Rules, SeccompError> {
    let mut rules = eperm()?;
    rules.remove(&libc::SYS_setsid);
    if namespaces {
        rules.remove(&libc::SYS_unshare);
        rules.remove(&libc::SYS_mount);
    }
    if let Some(uids) = uids {
        rules.extend(identity_changes_outside(uids)?);
    }
    Ok(rules)
}

/// Identity changes a child of the template does not make (the BSD and fs-id calls, any
/// supplementary group) or makes only into `uids`: `setresuid` and `setresgid` with every
/// argument in range, `setgroups` to none.
fn identity_changes_outside(uids: std::ops::Range<u32>) -> Result<Rules, SeccompError> {
    let outside = || -> Result<Vec<SeccompRule>, SeccompError> {
        let mut rules = Vec::new();
        for arg in 0..3 {
            rules.push(SeccompRule::new(vec![condition(
                arg,
                Op::Lt,
                uids.start.into(),
            )?])?);
            rules.push(SeccompRule::new(vec![condition(
                arg,
                Op::Ge,
                uids.end.into(),
            )?])?);
        }
        Ok(rules)
    };
    let mut rules: Rules = [
        libc::SYS_setuid,
        libc::SYS_setreuid,
        libc::SYS_setfsuid,
        libc::SYS_setgid,
        libc::SYS_setregid,
        libc::SYS_setfsgid,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    rules.insert(libc::SYS_setresuid, outside()?);
    rules.insert(libc::SYS_setresgid, outside()?);
    rules.insert(
        libc::SYS_setgroups,
        vec![SeccompRule::new(vec![condition(0, Op::Ne, 0)?])?],
    );
    Ok(rules)
}

/// Denied whatever the arguments.
const ALWAYS_DENIED: &[i64] = &[
    // Namespaces (clone's flags are checked separately).
    libc::SYS_unshare,
    libc::SYS_setns,
    // The mount family.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    // Debugging other processes, reading or writing their memory, advising on it.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_process_mrelease,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    // Signals by bare thread id (any thread of any process) and through pidfds (which can
    // come from /proc/<pid>, revealing nothing in the arguments); glibc's raise and
    // pthread_kill use tgkill.
    libc::SYS_tkill,
    libc::SYS_pidfd_send_signal,
    // System V IPC and POSIX message queues outlive the process that made them: where there
    // is no IPC namespace (compat), one execution could leave data for the next.
    libc::SYS_shmget,
    libc::SYS_semget,
    libc::SYS_msgget,
    libc::SYS_mq_open,
    // Subsystems with a long record of privilege escalations and no use to a script.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    // Whole-machine administration.
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_lookup_dcookie,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_personality,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    // The sandbox is killed as one process group (compat, and nsjail where cgroups are
    // missing); a process in a new session or group would survive that.
    libc::SYS_setsid,
    libc::SYS_setpgid,
];

/// Raw port I/O, which exists only on x86.
#[cfg(target_arch = "x86_64")]
const PORT_IO: &[i64] = &[libc::SYS_iopl, libc::SYS_ioperm];
#[cfg(not(target_arch = "x86_64"))]
const PORT_IO: &[i64] = &[];

/// clone with any namespace flag; one rule per flag, as a rule can only test bits for equality.
fn namespace_clone() -> Result<Vec<SeccompRule>, SeccompError> {
    CLONE_NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            Ok(SeccompRule::new(vec![condition(
                0,
                Op::MaskedEq(flag),
                flag,
            )?])?)
        })
        .collect()
}

/// Calls that act on another process named by pid: allowed only on the caller itself (pid 0),
/// as a script has no business changing anyone else's limits, scheduling or memory placement.
/// On Lambda "anyone else" is the service and the sandbox waiting for the next caller.
fn other_processes() -> Result<Rules, SeccompError> {
    let pid_not_self = |arg: u8| -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![SeccompRule::new(vec![condition(arg, Op::Ne, 0)?])?])
    };
    let who_not_self_or_user = |user: u64| -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![
            SeccompRule::new(vec![condition(1, Op::Ne, 0)?])?,
            SeccompRule::new(vec![condition(0, Op::Eq, user)?])?,
        ])
    };
    let any_of = |arg: u8, values: &[u64]| -> Result<Vec<SeccompRule>, SeccompError> {
        values
            .iter()
            .map(|&value| Ok(SeccompRule::new(vec![condition(arg, Op::Eq, value)?])?))
            .collect()
    };
    Ok(Rules::from([
        (libc::SYS_prlimit64, pid_not_self(0)?),
        (libc::SYS_sched_setaffinity, pid_not_self(0)?),
        (libc::SYS_sched_setparam, pid_not_self(0)?),
        (libc::SYS_sched_setscheduler, pid_not_self(0)?),
        (libc::SYS_sched_setattr, pid_not_self(0)?),
        (libc::SYS_migrate_pages, pid_not_self(0)?),
        (libc::SYS_move_pages, pid_not_self(0)?),
        (libc::SYS_setpriority, who_not_self_or_user(PRIO_USER)?),
        (libc::SYS_ioprio_set, who_not_self_or_user(IOPRIO_WHO_USER)?),
        (libc::SYS_fcntl, any_of(1, &FCNTL_SIGNAL_ROUTES)?),
        (libc::SYS_ioctl, any_of(1, &IOCTL_SIGNAL_ROUTES)?),
    ]))
}
