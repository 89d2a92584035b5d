//! The compat sandbox's system-call policy, as data compiled by `seccompiler`.
//!
//! It gives the same answers as the kafel program in `layer/nsjail.cfg` (socket for anything but
//! AF_UNIX -> EACCES, clone3 -> ENOSYS, the kernel attack surface -> EPERM) and adds what only
//! compat needs, because here there are no namespaces between the script and the service:
//! `setsid`/`setpgid` are refused so no process can leave the sandbox's process group (which the
//! service kills at the end), and signals aimed at the service itself are refused.
//!
//! `seccompiler` gives one filter a single "on match" action, so the policy is one filter per
//! errno. The kernel runs every installed filter and the denial wins over the others' "allow";
//! a test checks that no system call appears in two filters.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("seccomp filters are not supported on the {0} architecture")]
    Arch(&'static str),
    #[error("the seccomp policy does not compile: {0}")]
    Compile(#[from] seccompiler::BackendError),
}

/// Whom the script must not signal: the service's own process and process group.
#[derive(Clone, Copy, Debug)]
pub struct Protected {
    pub service_pid: i32,
    pub service_pgid: i32,
}

/// One filter per errno, ready to install in the child (in this order, after Landlock).
#[derive(Clone, Debug)]
pub struct Policy {
    pub programs: Vec<BpfProgram>,
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// x32 system calls are the x86_64 numbers with this bit set, and pass the x86_64 architecture
/// check; each denial is repeated under its x32 number so the bit cannot route around it.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

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

impl Policy {
    pub fn build(protected: Protected) -> Result<Self, SeccompError> {
        let arch = target_arch()?;
        let filters = [
            (libc::EACCES, eacces_rules()?),
            (libc::ENOSYS, enosys_rules()),
            (libc::EPERM, eperm_rules(protected)?),
        ];
        let programs = filters
            .into_iter()
            .map(|(errno, rules)| {
                let filter = SeccompFilter::new(
                    with_x32_aliases(rules),
                    SeccompAction::Allow,
                    SeccompAction::Errno(errno as u32),
                    arch,
                )?;
                BpfProgram::try_from(filter)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { programs })
    }
}

fn target_arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH))
}

/// The seeds promise "socket returns EACCES": every family but AF_UNIX, which local IPC
/// (multiprocessing) needs. Without a network namespace this is what keeps scripts off the
/// network, off loopback services and off the Lambda Runtime API.
fn eacces_rules() -> Result<Rules, SeccompError> {
    let not_unix = condition(0, Op::Ne, libc::AF_UNIX as u64)?;
    Ok(Rules::from([(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![not_unix])?],
    )]))
}

/// clone3 passes its flags in memory seccomp cannot read; ENOSYS makes glibc fall back to
/// clone(), whose flags are checked.
fn enosys_rules() -> Rules {
    Rules::from([(libc::SYS_clone3, vec![])])
}

fn eperm_rules(protected: Protected) -> Result<Rules, SeccompError> {
    let mut rules: Rules = always_denied().iter().map(|&nr| (nr, vec![])).collect();
    rules.insert(libc::SYS_clone, namespace_clone_rules()?);
    rules.extend(signal_rules(protected)?);
    Ok(rules)
}

/// Denied whatever the arguments.
fn always_denied() -> Vec<i64> {
    let mut denied = vec![
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
        // Debugging other processes and reading or writing their memory: in compat the service
        // runs under the same uid on some platforms.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
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
        // compat only: the service ends an execution by killing its process group; a process
        // that started a new session or group would survive that where there are no cgroups.
        libc::SYS_setsid,
        libc::SYS_setpgid,
        // compat only: tkill takes a bare thread id, which could name one of the service's
        // threads; glibc uses tgkill, whose thread group is checked below.
        libc::SYS_tkill,
        // compat only: a pidfd can come from opening /proc/<pid>, which no argument reveals.
        libc::SYS_pidfd_send_signal,
    ];
    // Raw port I/O exists only on x86.
    #[cfg(target_arch = "x86_64")]
    denied.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    denied
}

/// clone with any namespace flag; one rule per flag, as a rule can only test bits for equality.
fn namespace_clone_rules() -> Result<Vec<SeccompRule>, SeccompError> {
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

/// Signals aimed at the service: its pid, its process group, or every process (-1). Another
/// sandbox's processes are kept apart by uid (as root) or Landlock's signal scope.
fn signal_rules(protected: Protected) -> Result<Rules, SeccompError> {
    let pid = protected.service_pid as u32 as u64;
    let group = protected.service_pgid.wrapping_neg() as u32 as u64;
    let everyone = (-1i32) as u32 as u64;
    let kill_targets = [pid, group, everyone]
        .into_iter()
        .map(|target| Ok(SeccompRule::new(vec![condition(0, Op::Eq, target)?])?))
        .collect::<Result<Vec<_>, SeccompError>>()?;
    let first_arg_is_service = || -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![SeccompRule::new(vec![condition(0, Op::Eq, pid)?])?])
    };
    Ok(Rules::from([
        (libc::SYS_kill, kill_targets),
        (libc::SYS_tgkill, first_arg_is_service()?),
        (libc::SYS_rt_sigqueueinfo, first_arg_is_service()?),
        (libc::SYS_rt_tgsigqueueinfo, first_arg_is_service()?),
        (libc::SYS_pidfd_open, first_arg_is_service()?),
    ]))
}

/// pid_t and int arguments are 32 bits; comparing the low word is what the kernel reads.
fn condition(arg: u8, op: Op, value: u64) -> Result<SeccompCondition, SeccompError> {
    Ok(SeccompCondition::new(arg, Len::Dword, op, value)?)
}

#[cfg(target_arch = "x86_64")]
fn with_x32_aliases(rules: Rules) -> Rules {
    // Calls whose x32 number is not the x86_64 one plus the bit (x32 has its own entry points
    // for calls that pass pointers to structures of different sizes).
    const X32_ONLY: [(i64, i64); 5] = [
        (libc::SYS_ptrace, 521),
        (libc::SYS_rt_sigqueueinfo, 524),
        (libc::SYS_rt_tgsigqueueinfo, 536),
        (libc::SYS_process_vm_readv, 539),
        (libc::SYS_process_vm_writev, 540),
    ];
    let mut all = rules.clone();
    for (nr, chain) in rules {
        all.insert(nr | X32_SYSCALL_BIT, chain.clone());
        if let Some((_, x32)) = X32_ONLY.iter().find(|(native, _)| *native == nr) {
            all.insert(x32 | X32_SYSCALL_BIT, chain);
        }
    }
    all
}

#[cfg(not(target_arch = "x86_64"))]
fn with_x32_aliases(rules: Rules) -> Rules {
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> Protected {
        Protected {
            service_pid: 4242,
            service_pgid: 4242,
        }
    }

    #[test]
    fn the_policy_compiles_to_one_program_per_errno() {
        let policy = Policy::build(protected()).expect("policy compiles");
        assert_eq!(policy.programs.len(), 3);
        assert!(policy.programs.iter().all(|program| !program.is_empty()));
        // BPF programs are limited to 4096 instructions.
        assert!(policy.programs.iter().all(|program| program.len() < 4096));
    }

    #[test]
    fn no_system_call_is_in_two_filters() {
        let eacces = eacces_rules().expect("rules");
        let enosys = enosys_rules();
        let eperm = eperm_rules(protected()).expect("rules");
        let mut seen = std::collections::HashSet::new();
        for nr in eacces.keys().chain(enosys.keys()).chain(eperm.keys()) {
            assert!(seen.insert(*nr), "system call {nr} is in two filters");
        }
    }

    #[test]
    fn compat_only_denials_are_present() {
        let eperm = eperm_rules(protected()).expect("rules");
        for nr in [
            libc::SYS_setsid,
            libc::SYS_setpgid,
            libc::SYS_ptrace,
            libc::SYS_kill,
        ] {
            assert!(eperm.contains_key(&nr), "system call {nr} is not denied");
        }
    }
}
