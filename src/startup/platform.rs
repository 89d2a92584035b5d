//! What the platform allows, probed once at start, and the sandbox chosen from it.
//!
//! Probing acts (forks a child that tries each layer); choosing is a pure function of the
//! probe results and the configuration, so tests can simulate any platform, such as Lambda's
//! refusal of user namespaces.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::config::SandboxChoice;
use crate::sandbox::SandboxKind;
use crate::sandbox::{probe_in_child, Isolation};

/// What the platform allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    pub user_namespaces: bool,
    pub cgroups: bool,
    pub seccomp: bool,
    pub no_new_privs: bool,
    /// The kernel's Landlock ABI, 0 without Landlock.
    pub landlock_abi: u32,
    /// seccomp filters may hand calls to a supervisor (SECCOMP_RET_USER_NOTIF, Linux 5.0).
    pub seccomp_user_notification: bool,
}

/// The probes, behind a trait so tests can simulate refusals.
pub trait Probes {
    fn user_namespaces(&self) -> bool;
    fn seccomp(&self) -> bool;
    fn no_new_privs(&self) -> bool;
    fn landlock_abi(&self) -> u32;
    fn seccomp_user_notification(&self) -> bool;
}

impl Platform {
    /// What AWS Lambda allows: no user namespaces, no writable cgroups, no Landlock; seccomp,
    /// no_new_privs and user notification (Linux 5.10 and later) are there.
    pub const LAMBDA: Platform = Platform {
        user_namespaces: false,
        cgroups: false,
        seccomp: true,
        no_new_privs: true,
        landlock_abi: 0,
        seccomp_user_notification: true,
    };

    /// Runs every probe; `cgroups` comes from the cgroup detection that also creates them.
    pub fn probe(probes: &dyn Probes, cgroups: bool) -> Self {
        Self {
            user_namespaces: probes.user_namespaces(),
            cgroups,
            seccomp: probes.seccomp(),
            no_new_privs: probes.no_new_privs(),
            landlock_abi: probes.landlock_abi(),
            seccomp_user_notification: probes.seccomp_user_notification(),
        }
    }

    /// The layers a sandbox of `kind` has here.
    pub fn isolation(&self, kind: SandboxKind) -> Isolation {
        match kind {
            // nsjail installs its own seccomp policy under no_new_privs; it has no Landlock.
            SandboxKind::Nsjail => Isolation {
                namespaces: true,
                cgroups: self.cgroups,
                seccomp: self.seccomp,
                no_new_privs: self.no_new_privs,
                landlock: false,
                signal_guard: false,
            },
            SandboxKind::Compat => Isolation {
                namespaces: false,
                cgroups: self.cgroups,
                seccomp: self.seccomp && self.no_new_privs,
                no_new_privs: self.no_new_privs,
                landlock: self.landlock_abi > 0 && self.no_new_privs,
                signal_guard: self.seccomp && self.no_new_privs && self.seccomp_user_notification,
            },
        }
    }
}

/// The sandbox to run, with its layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub kind: SandboxKind,
    pub isolation: Isolation,
}

/// Why no script may run here: the platform cannot give what the configuration requires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "SANDBOX=nsjail, but this platform refuses user namespaces; use SANDBOX=auto or \
         FORCE_COMPAT=1"
    )]
    NsjailWithoutNamespaces,
    #[error(
        "the {} sandbox has only [{has}] here, below MIN_ISOLATION={minimum}; scripts are \
         refused rather than run with less isolation",
        kind.as_str()
    )]
    BelowMinimum {
        kind: SandboxKind,
        has: Isolation,
        minimum: Isolation,
    },
}

/// Picks the sandbox, or says why no script may run here.
pub fn choose(
    wanted: SandboxChoice,
    platform: &Platform,
    minimum: &Isolation,
) -> Result<Choice, Refusal> {
    let kind = match wanted {
        SandboxChoice::Nsjail if !platform.user_namespaces => {
            return Err(Refusal::NsjailWithoutNamespaces)
        }
        SandboxChoice::Nsjail => SandboxKind::Nsjail,
        SandboxChoice::Compat => SandboxKind::Compat,
        SandboxChoice::Auto if platform.user_namespaces => SandboxKind::Nsjail,
        SandboxChoice::Auto => SandboxKind::Compat,
    };
    let isolation = platform.isolation(kind);
    if !isolation.covers(minimum) {
        return Err(Refusal::BelowMinimum {
            kind,
            has: isolation,
            minimum: *minimum,
        });
    }
    Ok(Choice { kind, isolation })
}

/// The real probes: each tries its layer in a forked child, so nothing sticks to the service.
#[derive(Debug, Default)]
pub struct SystemProbes;

impl Probes for SystemProbes {
    fn user_namespaces(&self) -> bool {
        // Everything nsjail unshares; a platform may allow a user namespace but refuse the rest.
        let flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        // SAFETY: unshare with flags only.
        probe_in_child(&|| unsafe { libc::unshare(flags) } == 0)
    }

    fn seccomp(&self) -> bool {
        let Some(allow_all) = allow_all_program() else {
            return false;
        };
        // apply_filter also sets no_new_privs, as an unprivileged process needs it.
        probe_in_child(&|| seccompiler::apply_filter(&allow_all).is_ok())
    }

    fn no_new_privs(&self) -> bool {
        // SAFETY: prctl with integer arguments.
        probe_in_child(&|| unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0)
    }

    fn landlock_abi(&self) -> u32 {
        crate::sandbox::landlock_abi()
    }

    fn seccomp_user_notification(&self) -> bool {
        crate::sandbox::user_notification_works()
    }
}

/// A filter that allows everything: installing it proves the platform lets us install filters.
fn allow_all_program() -> Option<BpfProgram> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).ok()?;
    let filter = SeccompFilter::new(
        BTreeMap::new(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .ok()?;
    BpfProgram::try_from(filter).ok()
}

/// Keeps the service's secrets from scripts running under its uid: an undumpable process's
/// `/proc/<pid>/environ`, `mem` and friends belong to root, and it cannot be ptrace-attached.
/// Also makes the service the reaper of every orphan its sandboxes leave, so none escapes to
/// an init that would not kill it.
pub fn protect_service() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Simulated(Platform);

    impl Probes for Simulated {
        fn user_namespaces(&self) -> bool {
            self.0.user_namespaces
        }
        fn seccomp(&self) -> bool {
            self.0.seccomp
        }
        fn no_new_privs(&self) -> bool {
            self.0.no_new_privs
        }
        fn landlock_abi(&self) -> u32 {
            self.0.landlock_abi
        }
        fn seccomp_user_notification(&self) -> bool {
            self.0.seccomp_user_notification
        }
    }

    const EVERYTHING: Platform = Platform {
        user_namespaces: true,
        cgroups: true,
        seccomp: true,
        no_new_privs: true,
        landlock_abi: 6,
        seccomp_user_notification: true,
    };
    const LAMBDA: Platform = Platform::LAMBDA;

    fn seccomp_minimum() -> Isolation {
        Isolation::parse("seccomp").expect("valid")
    }

    fn probed(platform: Platform) -> Platform {
        Platform::probe(&Simulated(platform), platform.cgroups)
    }

    #[test]
    fn auto_picks_nsjail_where_namespaces_are_allowed() {
        let choice =
            choose(SandboxChoice::Auto, &probed(EVERYTHING), &seccomp_minimum()).expect("allowed");
        assert_eq!(choice.kind, SandboxKind::Nsjail);
        assert_eq!(
            choice.isolation.names(),
            ["namespaces", "cgroups", "seccomp", "no_new_privs"]
        );
    }

    #[test]
    fn auto_falls_back_to_compat_where_namespaces_are_refused() {
        let choice =
            choose(SandboxChoice::Auto, &probed(LAMBDA), &seccomp_minimum()).expect("allowed");
        assert_eq!(choice.kind, SandboxKind::Compat);
        assert_eq!(
            choice.isolation.names(),
            ["seccomp", "no_new_privs", "signal_guard"]
        );
    }

    #[test]
    fn compat_reports_landlock_where_the_kernel_has_it() {
        let choice = choose(
            SandboxChoice::Compat,
            &probed(EVERYTHING),
            &seccomp_minimum(),
        )
        .expect("allowed");
        assert_eq!(
            choice.isolation.names(),
            [
                "cgroups",
                "seccomp",
                "no_new_privs",
                "landlock",
                "signal_guard"
            ]
        );
    }

    #[test]
    fn forcing_nsjail_without_namespaces_is_refused_with_a_reason() {
        let error = choose(SandboxChoice::Nsjail, &probed(LAMBDA), &seccomp_minimum())
            .expect_err("no namespaces");
        assert_eq!(error, Refusal::NsjailWithoutNamespaces);
        assert!(error.to_string().contains("user namespaces"), "{error}");
    }

    #[test]
    fn below_the_minimum_scripts_are_refused() {
        let no_seccomp = Platform {
            seccomp: false,
            ..LAMBDA
        };
        let error = choose(SandboxChoice::Auto, &probed(no_seccomp), &seccomp_minimum())
            .expect_err("below the minimum");
        assert!(matches!(error, Refusal::BelowMinimum { .. }), "{error}");
        assert!(
            error.to_string().contains("MIN_ISOLATION=seccomp"),
            "{error}"
        );
        let no_privs = Platform {
            no_new_privs: false,
            ..LAMBDA
        };
        assert!(choose(SandboxChoice::Compat, &probed(no_privs), &seccomp_minimum()).is_err());
        let landlock = Isolation::parse("seccomp,landlock").expect("valid");
        assert!(choose(SandboxChoice::Compat, &probed(LAMBDA), &landlock).is_err());
        let none = Isolation::default();
        assert!(choose(SandboxChoice::Compat, &probed(no_seccomp), &none).is_ok());
    }

    #[test]
    fn the_real_probes_agree_with_this_machine() {
        let platform = Platform::probe(&SystemProbes, false);
        // Every platform this service supports allows seccomp and no_new_privs.
        assert!(platform.seccomp, "{platform:?}");
        assert!(platform.no_new_privs, "{platform:?}");
        // This machine's kernel (and Lambda's, 5.10 and later) hands calls to a supervisor.
        assert!(platform.seccomp_user_notification, "{platform:?}");
    }
}
