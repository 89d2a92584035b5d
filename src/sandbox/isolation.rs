//! Which isolation layers are in force, as reported in `/health` and every envelope, and as
//! required by `MIN_ISOLATION`.

use std::fmt;

/// A set of isolation layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// User, mount, PID, network, IPC and UTS namespaces (nsjail).
    pub namespaces: bool,
    /// A per-execution cgroup (memory and process limits over every process).
    pub cgroups: bool,
    pub seccomp: bool,
    pub no_new_privs: bool,
    pub landlock: bool,
    /// compat: every signal a script aims at another pid is checked by the service, which lets
    /// through only those inside the sandbox (seccomp user notification). nsjail's PID namespace
    /// gives the same by construction, so it is not listed there.
    pub signal_guard: bool,
}

/// Reads one layer's field.
type Held = fn(&Isolation) -> bool;

/// The names in their report order, with the field each stands for.
const LAYERS: [(&str, Held); 6] = [
    ("namespaces", |i| i.namespaces),
    ("cgroups", |i| i.cgroups),
    ("seccomp", |i| i.seccomp),
    ("no_new_privs", |i| i.no_new_privs),
    ("landlock", |i| i.landlock),
    ("signal_guard", |i| i.signal_guard),
];

impl Isolation {
    /// The layers in force, e.g. `["cgroups", "seccomp", "no_new_privs", "landlock"]`.
    pub fn names(&self) -> Vec<&'static str> {
        LAYERS
            .iter()
            .filter(|(_, held)| held(self))
            .map(|(name, _)| *name)
            .collect()
    }

    /// Every layer of `required` is in force here.
    pub fn covers(&self, required: &Isolation) -> bool {
        LAYERS.iter().all(|(_, held)| !held(required) || held(self))
    }

    /// Parses a comma-separated list of layer names (`none` for the empty set).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut isolation = Self::default();
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match name {
                "none" => {}
                "namespaces" => isolation.namespaces = true,
                "cgroups" => isolation.cgroups = true,
                "seccomp" => isolation.seccomp = true,
                "no_new_privs" => isolation.no_new_privs = true,
                "landlock" => isolation.landlock = true,
                "signal_guard" => isolation.signal_guard = true,
                other => {
                    return Err(format!(
                        "unknown layer {other:?}; expected a comma-separated list of \
                         namespaces, cgroups, seccomp, no_new_privs, landlock, signal_guard, \
                         or none"
                    ))
                }
            }
        }
        Ok(isolation)
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_in_a_fixed_order() {
        let isolation = Isolation::parse("landlock, seccomp,namespaces").expect("valid");
        assert_eq!(isolation.names(), ["namespaces", "seccomp", "landlock"]);
        assert_eq!(
            Isolation::parse("none").expect("valid"),
            Isolation::default()
        );
        assert!(Isolation::parse("chroot").is_err());
    }

    #[test]
    fn covers_means_a_superset() {
        let required = Isolation::parse("seccomp").expect("valid");
        let compat = Isolation::parse("seccomp,no_new_privs").expect("valid");
        assert!(compat.covers(&required));
        assert!(!Isolation::default().covers(&required));
        assert!(compat.covers(&Isolation::default()));
    }
}
