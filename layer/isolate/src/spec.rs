//! What one execution's isolation consists of, and its encoding for the trip from the service
//! to a template's child.

use std::ffi::CString;

pub use crate::wire::Malformed;
use crate::wire::{Reader, Writer};

/// One limit, soft and hard alike: a script must not raise any of them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: u32,
    pub value: u64,
}

/// A uid and gid to switch to (compat when the service runs as root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// New namespaces for a template's child under nsjail: a user namespace nested in the jail's
/// (mapping `id` to itself, the only id there), then PID, mount, network, IPC, UTS and cgroup
/// namespaces, a fresh `/tmp` (a tmpfs with `tmp_options`) and a fresh `/proc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaces {
    pub id: u32,
    pub tmp_options: CString,
}

/// Everything one execution's process (or a template) does to isolate itself before any
/// script exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    pub rlimits: Vec<Rlimit>,
    /// Raise the OOM score, inherited by every process after: an execution's, never a
    /// template's.
    pub first_for_oom: bool,
    pub identity: Option<Identity>,
    /// Capabilities (a bit per number) kept across the switch to `identity` and across exec,
    /// as ambient capabilities: a template's, which its children need to switch to their own
    /// uids. Every other spec drops every capability.
    pub retained_capabilities: u64,
    pub namespaces: Option<Namespaces>,
    /// The working directory (compat's scratch; `/tmp` in namespaces).
    pub workdir: Option<CString>,
    pub no_new_privs: bool,
    /// Installed in order.
    pub seccomp: Vec<Vec<libc::sock_filter>>,
    /// Installed last with a listener the service serves (compat's signal guard).
    pub signal_guard: Option<Vec<libc::sock_filter>>,
}

impl Spec {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        out.u32(self.rlimits.len() as u32);
        for limit in &self.rlimits {
            out.u32(limit.resource);
            out.u64(limit.value);
        }
        out.flag(self.first_for_oom);
        out.flag(self.identity.is_some());
        if let Some(identity) = self.identity {
            out.u32(identity.uid);
            out.u32(identity.gid);
        }
        out.u64(self.retained_capabilities);
        out.flag(self.namespaces.is_some());
        if let Some(namespaces) = &self.namespaces {
            out.u32(namespaces.id);
            out.bytes(namespaces.tmp_options.as_bytes());
        }
        out.flag(self.workdir.is_some());
        if let Some(workdir) = &self.workdir {
            out.bytes(workdir.as_bytes());
        }
        out.flag(self.no_new_privs);
        out.u32(self.seccomp.len() as u32);
        for program in &self.seccomp {
            out.program(program);
        }
        out.flag(self.signal_guard.is_some());
        if let Some(program) = &self.signal_guard {
            out.program(program);
        }
        out.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut input = Reader::new(bytes);
        let mut spec = Self::default();
        for _ in 0..input.u32()? {
            let resource = input.u32()?;
            let value = input.u64()?;
            spec.rlimits.push(Rlimit { resource, value });
        }
        spec.first_for_oom = input.flag()?;
        if input.flag()? {
            let (uid, gid) = (input.u32()?, input.u32()?);
            spec.identity = Some(Identity { uid, gid });
        }
        spec.retained_capabilities = input.u64()?;
        if input.flag()? {
            let id = input.u32()?;
            let tmp_options = input.c_string()?;
            spec.namespaces = Some(Namespaces { id, tmp_options });
        }
        if input.flag()? {
            spec.workdir = Some(input.c_string()?);
        }
        spec.no_new_privs = input.flag()?;
        for _ in 0..input.u32()? {
            spec.seccomp.push(input.program()?);
        }
        if input.flag()? {
            spec.signal_guard = Some(input.program()?);
        }
        input.end()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_its_encoding() {
        let filter = |k| libc::sock_filter {
            code: 6,
            jt: 1,
            jf: 2,
            k,
        };
        let spec = Spec {
            rlimits: vec![Rlimit {
                resource: 0,
                value: u64::MAX,
            }],
            first_for_oom: true,
            identity: Some(Identity {
                uid: 61000,
                gid: 61001,
            }),
            retained_capabilities: 0xc0,
            namespaces: Some(Namespaces {
                id: 65534,
                tmp_options: CString::new("size=64m").expect("no NUL"),
            }),
            workdir: Some(CString::new("/tmp").expect("no NUL")),
            no_new_privs: true,
            seccomp: vec![vec![filter(1), filter(2)], vec![filter(3)]],
            signal_guard: Some(vec![filter(4)]),
        };
        assert_eq!(Spec::decode(&spec.encode()), Ok(spec.clone()));
        let encoded = spec.encode();
        assert_eq!(Spec::decode(&encoded[..encoded.len() - 1]), Err(Malformed));
        assert_eq!(
            Spec::decode(&[encoded.clone(), vec![0]].concat()),
            Err(Malformed)
        );
    }
}
