//! The isolation steps of one execution, written once for both sandboxes and both ways of
//! starting a sandbox.
//!
//! A [`Spec`] says what to do (rlimits, identity, namespaces, working directory,
//! no_new_privs, Landlock, seccomp, the signal guard); the service builds it. Two callers run it:
//! the service itself between fork and exec when it starts a cold compat sandbox, and each child
//! a template forks, through the C entry points in [`ffi`] (layer/harness_template.py loads this
//! crate as a shared library). The steps come in two halves because a new PID namespace only
//! applies to children: [`Spec::enter`] (limits, identity, new namespaces), then, in the first
//! process of the new PID namespace when there is one, [`Spec::confine`] (mounts, capabilities,
//! working directory, no_new_privs, Landlock, seccomp).

mod clone_support;
pub mod fdpass;
pub mod ffi;
mod spec;
mod split;
mod steps;
mod vfork;
mod wire;

pub use spec::{Identity, Namespaces, Rlimit, Spec};
pub use steps::Fds;
