//! `python-executor probe`: what start-up finds on this platform, said before anything is
//! deployed on it. The sandbox, its isolation layers and cgroup version as `/health` will report
//! them, each missing layer with why, and whether scripts will run at all under MIN_ISOLATION.
//! The same report is logged when the service starts, so it also shows in Lambda's init log.

use std::fmt::Write as _;
use std::process::ExitCode;

use indexmap::IndexMap;
use serde::Serialize;

use crate::config::Config;
use crate::sandbox::Isolation;
use crate::sandbox::SandboxKind;
use crate::startup::platform::Platform;
use crate::startup::{self, Probed};

/// What the probe found, in `/health`'s words where `/health` has them.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Scripts will run: a sandbox meets MIN_ISOLATION here and passed its self-test.
    pub ok: bool,
    pub sandbox: Option<&'static str>,
    pub isolation: Vec<&'static str>,
    pub cgroup: Option<&'static str>,
    /// Why no script may run here, when none may: in full, for the operator (`/health`, which
    /// anyone may read, gives only the category and a fixed sentence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kind of failure, as `/health` reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_category: Option<&'static str>,
    /// Each layer not in force, with why.
    pub missing: IndexMap<&'static str, String>,
    pub min_isolation: Vec<&'static str>,
    /// What each probe found; absent when start-up failed before probing.
    pub platform: Option<Platform>,
    pub layer: Option<String>,
    pub version: &'static str,
}

/// Probes as start-up does, prints the report, and exits 1 when scripts would be refused.
pub async fn run(config: &Config, json: bool) -> ExitCode {
    let report = match startup::probe(config).await {
        Ok(probed) => Report::new(&probed, config),
        Err(error) => Report::failed(error.to_string(), config),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

impl Report {
    pub fn new(probed: &Probed, config: &Config) -> Self {
        let (kind, isolation) = match &probed.sandbox {
            Ok(sandbox) => (Some(sandbox.kind()), sandbox.isolation()),
            Err(_) => (None, Isolation::default()),
        };
        let findings = Findings {
            kind,
            platform: &probed.platform,
            cgroup_error: probed.cgroups.as_ref().err(),
            fallback: probed.fallback.as_deref(),
        };
        Self {
            ok: kind.is_some(),
            sandbox: kind.map(SandboxKind::as_str),
            isolation: isolation.names(),
            cgroup: probed.cgroups.as_ref().ok().map(|root| root.version()),
            // For the operator running the probe (or reading the log): the full reason.
            reason: probed.sandbox.as_ref().err().map(|why| why.detail.clone()),
            reason_category: probed
                .sandbox
                .as_ref()
                .err()
                .map(|why| why.category.as_str()),
            missing: missing(&isolation, &findings),
            min_isolation: config.min_isolation.names(),
            platform: Some(probed.platform),
            layer: Some(probed.layer.root.display().to_string()),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Start-up stopped before it could probe (no layer, say).
    pub fn failed(reason: String, config: &Config) -> Self {
        Self {
            ok: false,
            sandbox: None,
            isolation: Vec::new(),
            cgroup: None,
            reason: Some(reason),
            reason_category: Some(crate::execute::Category::Setup.as_str()),
            missing: IndexMap::new(),
            min_isolation: config.min_isolation.names(),
            platform: None,
            layer: None,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// One log line with the whole report, at error level when scripts will be refused.
    pub fn log(&self) {
        let missing = self
            .missing
            .iter()
            .map(|(layer, why)| format!("{layer}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        let isolation = self.isolation.join(",");
        match &self.reason {
            None => tracing::info!(
                sandbox = self.sandbox,
                %isolation,
                cgroup = self.cgroup,
                layer = self.layer,
                %missing,
                "sandbox ready"
            ),
            Some(reason) => tracing::error!(
                %reason,
                %missing,
                "no sandbox: every execution will be refused"
            ),
        }
    }

    /// The report for a person at a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok {
            "scripts will run here"
        } else {
            "scripts will be REFUSED here"
        };
        let none = |list: &[&str]| match list {
            [] => "none".to_owned(),
            names => names.join(", "),
        };
        let _ = writeln!(out, "python-executor {}: {verdict}", self.version);
        let line = |out: &mut String, key: &str, value: &str| {
            let _ = writeln!(out, "  {key:<16}{value}");
        };
        line(&mut out, "sandbox", self.sandbox.unwrap_or("none"));
        line(&mut out, "isolation", &none(&self.isolation));
        line(&mut out, "MIN_ISOLATION", &none(&self.min_isolation));
        line(&mut out, "cgroup", self.cgroup.unwrap_or("none"));
        line(
            &mut out,
            "layer",
            self.layer.as_deref().unwrap_or("not found"),
        );
        if let Some(platform) = &self.platform {
            line(&mut out, "platform", &platform_text(platform));
        }
        for (layer, why) in &self.missing {
            line(&mut out, &format!("no {layer}"), why);
        }
        if let Some(reason) = &self.reason {
            line(&mut out, "reason", reason);
        }
        out
    }
}

fn platform_text(p: &Platform) -> String {
    let yes = |allowed: bool| if allowed { "yes" } else { "no" };
    format!(
        "user namespaces {}, cgroups {}, seccomp {}, no_new_privs {}, landlock ABI {}",
        yes(p.user_namespaces),
        yes(p.cgroups),
        yes(p.seccomp),
        yes(p.no_new_privs),
        p.landlock_abi
    )
}

/// What explains the missing layers.
struct Findings<'a> {
    /// The sandbox that will run, if any.
    kind: Option<SandboxKind>,
    platform: &'a Platform,
    cgroup_error: Option<&'a crate::sandbox::CgroupError>,
    fallback: Option<&'a str>,
}

/// Every layer not in `isolation`, in report order, with why it is not; nothing when no sandbox
/// runs at all (the reason says why).
fn missing(isolation: &Isolation, findings: &Findings) -> IndexMap<&'static str, String> {
    if findings.kind.is_none() {
        return IndexMap::new();
    }
    let all = Isolation {
        namespaces: true,
        cgroups: true,
        seccomp: true,
        no_new_privs: true,
        landlock: true,
        signal_guard: true,
    };
    let present = isolation.names();
    all.names()
        .into_iter()
        .filter(|layer| !present.contains(layer))
        .map(|layer| (layer, why_missing(layer, findings)))
        .collect()
}

fn why_missing(layer: &str, f: &Findings) -> String {
    let p = f.platform;
    let why = match layer {
        "namespaces" if !p.user_namespaces => "the platform refuses user namespaces",
        "namespaces" => match f.fallback {
            Some(fallback) => return format!("nsjail failed its self-test ({fallback})"),
            None => "SANDBOX=compat (or FORCE_COMPAT=1) chose the compat sandbox",
        },
        "cgroups" => match f.cgroup_error {
            Some(error) => return format!("no writable cgroup hierarchy ({error}); rlimits only"),
            None => "the sandbox does not use cgroups",
        },
        "seccomp" if !p.seccomp => "the kernel refuses seccomp filters",
        "seccomp" => "compat installs seccomp only under no_new_privs, which is refused",
        "no_new_privs" => "the kernel refuses PR_SET_NO_NEW_PRIVS",
        "landlock" if f.kind == Some(SandboxKind::Nsjail) => {
            "nsjail does not use Landlock; its mount namespace confines the filesystem"
        }
        "landlock" if p.landlock_abi == 0 => "the kernel has no Landlock",
        "landlock" => "Landlock needs no_new_privs, which is refused",
        "signal_guard" if f.kind == Some(SandboxKind::Nsjail) => {
            "nsjail's PID namespace keeps signals inside the sandbox"
        }
        "signal_guard" if !p.seccomp_user_notification => {
            "the platform refuses seccomp user notification: scripts may signal only their own \
             process group as a whole"
        }
        "signal_guard" => "the signal guard needs seccomp under no_new_privs",
        _ => "unknown",
    };
    why.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAMBDA: Platform = Platform::LAMBDA;

    #[test]
    fn every_missing_layer_says_why() {
        let read_only = crate::sandbox::CgroupError {
            path: "/sys/fs/cgroup".into(),
            source: std::io::Error::other("read-only file system"),
        };
        let findings = Findings {
            kind: Some(SandboxKind::Compat),
            platform: &LAMBDA,
            cgroup_error: Some(&read_only),
            fallback: None,
        };
        let isolation = LAMBDA.isolation(SandboxKind::Compat);
        let missing = missing(&isolation, &findings);
        assert_eq!(
            missing.keys().copied().collect::<Vec<_>>(),
            ["namespaces", "cgroups", "landlock"]
        );
        assert!(missing["namespaces"].contains("refuses user namespaces"));
        assert!(missing["cgroups"].contains("read-only file system"));
        assert!(missing["landlock"].contains("no Landlock"));
    }

    #[test]
    fn an_nsjail_fallback_is_explained() {
        let everything = Platform {
            user_namespaces: true,
            cgroups: true,
            landlock_abi: 6,
            ..LAMBDA
        };
        let findings = Findings {
            kind: Some(SandboxKind::Compat),
            platform: &everything,
            cgroup_error: None,
            fallback: Some("the nsjail sandbox does not start"),
        };
        let isolation = everything.isolation(SandboxKind::Compat);
        let missing = missing(&isolation, &findings);
        assert_eq!(missing.keys().copied().collect::<Vec<_>>(), ["namespaces"]);
        assert!(missing["namespaces"].contains("does not start"));
    }
}
