//! Resource limits of one execution, with their units carried by the types.
//!
//! nsjail mixes seconds, MiB and bytes in its flags; every conversion happens here, once.

use std::fmt;
use std::time::Duration;

/// A size in bytes. Constructed from the unit it was configured in, read in the unit a consumer
/// needs, so no bare number ever has to be guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn bytes(n: u64) -> Self {
        Self(n)
    }
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
    pub const fn as_bytes(self) -> u64 {
        self.0
    }
    /// Whole MiB, rounded up: nsjail's rlimit flags take MiB and must never round a limit to 0.
    pub const fn as_mib_ceil(self) -> u64 {
        self.0.div_ceil(1024 * 1024)
    }
    /// For buffer sizes; saturates on 32-bit targets, which this service does not support anyway.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// What one execution may use. Defaults are docs/design.md section 1's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline, owned by the service (a request's `timeout_s` may only lower it).
    pub wall: Duration,
    /// CPU time of each process (RLIMIT_CPU).
    pub cpu: Duration,
    /// Memory of the whole execution: every process the script starts, and its /tmp.
    pub memory: ByteSize,
    /// Largest file the script may write (RLIMIT_FSIZE).
    pub file_size: ByteSize,
    /// Processes and threads of the whole execution.
    pub processes: u32,
    /// Open file descriptors per process (RLIMIT_NOFILE).
    pub open_files: u32,
    /// Captured stdout beyond this is discarded and reported as truncated.
    pub stdout: ByteSize,
    /// Captured stderr beyond this is discarded and reported as truncated.
    pub stderr: ByteSize,
    /// Largest serialized result main() may return.
    pub result: ByteSize,
    /// Most files returned from `outputs/`.
    pub output_files: u32,
    /// Files returned from `outputs/` together, before base64.
    pub output_bytes: ByteSize,
    /// Largest state a session may save after a call (its variables and files, pickled).
    pub session_state: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(15),
            cpu: Duration::from_secs(10),
            memory: ByteSize::mib(700),
            file_size: ByteSize::mib(1),
            processes: 64,
            open_files: 64,
            stdout: ByteSize::mib(1),
            stderr: ByteSize::mib(1),
            result: ByteSize::mib(5),
            output_files: 32,
            output_bytes: ByteSize::mib(8),
            session_state: ByteSize::mib(32),
        }
    }
}

impl Limits {
    /// These limits with the wall-clock deadline lowered to what the request asked for.
    pub fn with_wall_at_most(&self, requested: Option<Duration>) -> Self {
        let wall = requested.map_or(self.wall, |asked| asked.min(self.wall));
        Self {
            wall,
            ..self.clone()
        }
    }

    /// Whole seconds for RLIMIT_CPU, rounded up and never 0 (0 would mean "no CPU at all").
    pub fn cpu_seconds(&self) -> u64 {
        self.cpu.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The hard RLIMIT_CPU a sandbox sets: one second above the limit. The harness lowers its
    /// script's soft limit to one below this, so the limit itself arrives as SIGXCPU (an
    /// unmistakable "CPU limit" signal); the hard limit's SIGKILL only follows if a script
    /// ignores SIGXCPU.
    pub fn cpu_hard_seconds(&self) -> u64 {
        self.cpu_seconds() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_rounds_up_so_a_limit_is_never_zero() {
        assert_eq!(ByteSize::kib(1).as_mib_ceil(), 1);
        assert_eq!(ByteSize::mib(700).as_mib_ceil(), 700);
        assert_eq!(ByteSize::bytes(700 * 1024 * 1024 + 1).as_mib_ceil(), 701);
    }

    #[test]
    fn a_request_can_lower_the_deadline_but_never_raise_it() {
        let limits = Limits::default();
        let lower = limits.with_wall_at_most(Some(Duration::from_secs(2)));
        assert_eq!(lower.wall, Duration::from_secs(2));
        let higher = limits.with_wall_at_most(Some(Duration::from_secs(60)));
        assert_eq!(higher.wall, Duration::from_secs(15));
        assert_eq!(limits.with_wall_at_most(None).wall, Duration::from_secs(15));
    }

    #[test]
    fn cpu_seconds_round_up() {
        let limits = Limits {
            cpu: Duration::from_millis(1500),
            ..Limits::default()
        };
        assert_eq!(limits.cpu_seconds(), 2);
    }
}
