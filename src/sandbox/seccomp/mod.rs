//! The system-call policy of every sandbox, compiled by `seccompiler` from the tables in
//! [`rules`]. One policy for both: every path installs it through the isolation library
//! (`pyexec_isolate::Spec`), so the lists cannot disagree. Templates have a policy of their own
//! ([`Policy::for_template`]), under which their children still isolate themselves.
//!
//! `seccompiler` gives one filter a single "on match" action, so the policy is one program per
//! errno, plus the x32 guard ([`x32`]), installed chained into one filter ([`chain`]), and, in
//! compat, the filter that hands signals to the service for a decision ([`notify`]). The kernel
//! runs every installed filter and the most restrictive answer wins (an errno over a
//! notification over "allow"); a test checks that no system call appears in two errno programs.

mod chain;
mod notify;
mod rules;
mod x32;

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use thiserror::Error;

pub use notify::{install_with_listener, NOTIFIED_SIGNAL_CALLS};

/// The signal guard's program alone: installing it with a listener proves the platform allows
/// user notification (`platform`'s probe).
pub fn signal_guard_program() -> Result<BpfProgram, SeccompError> {
    notify::program(target_arch()?)
}

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("seccomp filters are not supported on the {0} architecture")]
    Arch(&'static str),
    #[error("the seccomp policy does not compile: {0}")]
    Compile(#[from] seccompiler::BackendError),
}

/// How signals to other processes are kept inside the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalScope {
    /// A PID namespace (nsjail) already hides every process outside the sandbox.
    Namespace,
    /// compat: each signal to another pid goes to the service, which allows it only within the
    /// sandbox's own process group (seccomp user notification).
    Supervised,
    /// compat where user notification is refused: a script may signal only its own process
    /// group as a whole (`kill(0, sig)`), nothing by pid.
    GroupOnly,
}

/// The compiled policy, in the order it is installed.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The errno programs and the x32 guard, chained into one ([`chain`]) as every execution
    /// installs them: built once with the policy, not per execution.
    chained: Vec<libc::sock_filter>,
    /// The same programs apart, for the tests that compare them with the chain.
    #[cfg(test)]
    programs: Vec<BpfProgram>,
    /// Installed last, with a listener the service serves (`SignalScope::Supervised`).
    pub supervised_signals: Option<BpfProgram>,
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// The programs every policy has: the denials that answer EACCES (sockets), ENOSYS and EPERM
/// (`eperm`, which differs between a template and an execution), and the x32 guard.
fn errno_programs(eperm: Rules, arch: TargetArch) -> Result<Vec<BpfProgram>, SeccompError> {
    let filters = [
        (libc::EACCES, rules::eacces()?),
        (libc::ENOSYS, rules::enosys()),
        (libc::EPERM, eperm),
    ];
    let mut programs = filters
        .into_iter()
        .map(|(errno, rules)| compile(rules, SeccompAction::Errno(errno as u32), arch))
        .collect::<Result<Vec<_>, _>>()?;
    programs.extend(x32::guard());
    Ok(programs)
}

impl Policy {
    pub fn build(signals: SignalScope) -> Result<Self, SeccompError> {
        let arch = target_arch()?;
        let mut eperm = rules::eperm()?;
        eperm.extend(signal_denials(signals)?);
        let programs = errno_programs(eperm, arch)?;
        let supervised_signals = match signals {
            SignalScope::Supervised => Some(notify::program(arch)?),
            SignalScope::Namespace | SignalScope::GroupOnly => None,
        };
        Ok(Self::with(programs, supervised_signals))
    }

    /// A template's own policy (see `rules::eperm_for_template`): installed before it imports
    /// anything, inherited by every child, which then installs [`Policy::build`]'s on top.
    pub fn for_template(
        namespaces: bool,
        uids: Option<std::ops::Range<u32>>,
    ) -> Result<Self, SeccompError> {
        let arch = target_arch()?;
        let mut eperm = rules::eperm_for_template(namespaces, uids)?;
        eperm.extend(signal_denials(SignalScope::Namespace)?);
        Ok(Self::with(errno_programs(eperm, arch)?, None))
    }

    fn with(programs: Vec<BpfProgram>, supervised_signals: Option<BpfProgram>) -> Self {
        Self {
            chained: to_libc(&chain::chained(&programs)),
            #[cfg(test)]
            programs,
            supervised_signals,
        }
    }

    /// The errno programs as the isolation steps install them (`pyexec_isolate::Spec`).
    /// Chained into one program ([`chain`]): one filter to install, not four.
    pub fn programs_for_isolation(&self) -> Vec<Vec<libc::sock_filter>> {
        vec![self.chained.clone()]
    }

    /// The signal guard's program as the isolation steps install it.
    pub fn signal_guard_for_isolation(&self) -> Option<Vec<libc::sock_filter>> {
        self.supervised_signals.as_deref().map(to_libc)
    }
}

/// seccompiler's instructions have the kernel's layout under their own name.
fn to_libc(program: &[seccompiler::sock_filter]) -> Vec<libc::sock_filter> {
    program
        .iter()
        .map(|instruction| libc::sock_filter {
            code: instruction.code,
            jt: instruction.jt,
            jf: instruction.jf,
            k: instruction.k,
        })
        .collect()
}

fn compile(
    rules: Rules,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, arch)?;
    Ok(BpfProgram::try_from(filter)?)
}

/// `kill(-1)` reaches every process the caller may signal: refused everywhere. Under
/// `GroupOnly`, every signal by pid is refused too; `kill(0, sig)` (the caller's own group)
/// stays, which is what terminating a script's own workers comes down to there.
fn signal_denials(signals: SignalScope) -> Result<Rules, SeccompError> {
    let everyone = (-1i32) as u32 as u64;
    let mut kill = vec![SeccompRule::new(vec![condition(0, Op::Eq, everyone)?])?];
    let mut rules = Rules::new();
    if signals == SignalScope::GroupOnly {
        kill.push(SeccompRule::new(vec![condition(0, Op::Ne, 0)?])?);
        for &nr in NOTIFIED_SIGNAL_CALLS
            .iter()
            .filter(|&&nr| nr != libc::SYS_kill)
        {
            rules.insert(nr, vec![]);
        }
    }
    rules.insert(libc::SYS_kill, kill);
    Ok(rules)
}

fn target_arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH))
}

/// pid_t and int arguments are 32 bits; comparing the low word is what the kernel reads.
fn condition(arg: u8, op: Op, value: u64) -> Result<SeccompCondition, SeccompError> {
    Ok(SeccompCondition::new(arg, Len::Dword, op, value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_compiles_for_every_signal_scope() {
        for scope in [
            SignalScope::Namespace,
            SignalScope::Supervised,
            SignalScope::GroupOnly,
        ] {
            let policy = Policy::build(scope).expect("policy compiles");
            assert!(policy.programs.iter().all(|program| !program.is_empty()));
            // BPF programs are limited to 4096 instructions; the errno programs are installed
            // chained into one.
            let installed = policy.programs_for_isolation();
            assert_eq!(installed.len(), 1);
            assert!(installed[0].len() < 4096, "{}", installed[0].len());
            assert_eq!(
                policy.supervised_signals.is_some(),
                scope == SignalScope::Supervised
            );
        }
    }

    #[test]
    fn a_templates_policy_lets_its_children_isolate_themselves_and_no_more() {
        let plain = rules::eperm().expect("rules");
        let jail = rules::eperm_for_template(true, None).expect("rules");
        let root = rules::eperm_for_template(false, Some(61_000..65_000)).expect("rules");
        for nr in [libc::SYS_setsid, libc::SYS_unshare, libc::SYS_mount] {
            assert!(plain.contains_key(&nr) && !jail.contains_key(&nr), "{nr}");
        }
        assert!(root.contains_key(&libc::SYS_unshare) && !root.contains_key(&libc::SYS_setsid));
        assert_eq!(root[&libc::SYS_setresuid].len(), 6);
        assert!(root.contains_key(&libc::SYS_setuid) && !jail.contains_key(&libc::SYS_setuid));
        assert!(Policy::for_template(false, Some(61_000..65_000)).is_ok());
    }

    #[test]
    fn no_system_call_is_in_two_errno_filters() {
        let mut eperm = rules::eperm().expect("rules");
        eperm.extend(signal_denials(SignalScope::GroupOnly).expect("rules"));
        let eacces = rules::eacces().expect("rules");
        let enosys = rules::enosys();
        let mut seen = std::collections::HashSet::new();
        for nr in eacces.keys().chain(enosys.keys()).chain(eperm.keys()) {
            assert!(seen.insert(*nr), "system call {nr} is in two filters");
        }
    }
}
