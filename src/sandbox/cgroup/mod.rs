//! Per-execution cgroups (v1 or v2): one memory and process budget for everything a sandbox runs.
//!
//! The service, not nsjail, owns these cgroups. The sandbox's first process joins its cgroup
//! before it executes anything, so nsjail, the harness and every process the script starts are
//! inside; the limit holds across all of them, and after the run the service can read whether
//! the kernel's OOM killer fired (an OOM kill and a timeout kill both look like SIGKILL), the
//! peak memory and the CPU time, then kill stragglers and remove the cgroup. cgroup v2's own
//! preparation is [`v2`]'s; [`favor`] keeps v1 moves fast.

mod favor;
mod v2;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

use crate::limits::Limits;

/// The name of the service's own directory in each hierarchy.
const SERVICE_DIR: &str = "python-executor";

#[derive(Debug, Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError {
        path: path.to_owned(),
        source,
    }
}

/// Where execution cgroups are created, found once at start.
#[derive(Clone, Debug)]
pub enum CgroupRoot {
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpuacct: Option<PathBuf>,
    },
    V2 {
        sandboxes: PathBuf,
    },
}

impl CgroupRoot {
    /// Finds a writable hierarchy under `mount` (normally `/sys/fs/cgroup`) with the memory and
    /// pids controllers, and prepares the service's parent directories in it.
    pub fn detect(mount: &Path) -> Result<Self, CgroupError> {
        if mount.join("cgroup.controllers").exists() {
            return v2::prepare(mount);
        }
        let memory = ensure_dir(&mount.join("memory").join(SERVICE_DIR))?;
        let pids = ensure_dir(&mount.join("pids").join(SERVICE_DIR))?;
        // Cgroups will be used: moves into them would otherwise wait for RCU grace periods.
        let _ = favor::favor_migrations();
        let cpuacct = ensure_dir(&mount.join("cpuacct").join(SERVICE_DIR)).ok();
        for parent in [&memory, &pids].into_iter().chain(cpuacct.as_ref()) {
            sweep_stale(parent);
        }
        Ok(Self::V1 {
            memory,
            pids,
            cpuacct,
        })
    }

    pub fn version(&self) -> &'static str {
        match self {
            Self::V1 { .. } => "v1",
            Self::V2 { .. } => "v2",
        }
    }

    /// Creates one execution's cgroup with the memory and process limits applied.
    pub fn create(&self, limits: &Limits) -> Result<ExecCgroup, CgroupError> {
        let name = unique_name();
        let memory = limits.memory.as_bytes().to_string();
        // +2: nsjail (or a template's child) and the harness's supervisor are in the cgroup too;
        // the script gets the rest.
        let pids = (u64::from(limits.processes) + 2).to_string();
        let cgroup = match self {
            Self::V1 {
                memory: memory_parent,
                pids: pids_parent,
                cpuacct,
            } => {
                let mut cgroup = ExecCgroup::new(true);
                let memory_dir = cgroup.add_dir(memory_parent.join(&name))?;
                write(&memory_dir.join("memory.limit_in_bytes"), &memory)?;
                // Only present with swap accounting; where it is, swap must not extend the limit.
                let _ = write(&memory_dir.join("memory.memsw.limit_in_bytes"), &memory);
                let pids_dir = cgroup.add_dir(pids_parent.join(&name))?;
                write(&pids_dir.join("pids.max"), &pids)?;
                if let Some(parent) = cpuacct {
                    cgroup.add_dir(parent.join(&name))?;
                }
                cgroup
            }
            Self::V2 { sandboxes } => {
                let mut cgroup = ExecCgroup::new(false);
                let dir = cgroup.add_dir(sandboxes.join(&name))?;
                write(&dir.join("memory.max"), &memory)?;
                let _ = write(&dir.join("memory.swap.max"), "0");
                write(&dir.join("pids.max"), &pids)?;
                cgroup
            }
        };
        Ok(cgroup)
    }
}

/// `exec-<pid>-<instance>-<n>`: the pid lets a later start sweep what a dead service left
/// (see [`sweep_stale`]); the instance, random per process, keeps two services with the same pid
/// apart (in containers the service is always PID 1, and a cgroup left by a killed container's
/// service would otherwise collide with the next one's).
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static INSTANCE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
    format!(
        "exec-{}-{}-{}",
        std::process::id(),
        *INSTANCE,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(super) fn ensure_dir(path: &Path) -> Result<PathBuf, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(path.to_owned()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(path.to_owned()),
        Err(error) => Err(at(path)(error)),
    }
}

pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(at(path))
}

/// What the cgroup saw of one execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupReport {
    pub oom_killed: bool,
    pub peak_memory_bytes: Option<u64>,
    pub cpu: Option<Duration>,
}

/// One execution's cgroup: a directory per hierarchy (v1) or one directory (v2).
#[derive(Debug)]
pub struct ExecCgroup {
    v1: bool,
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of every directory, ready for the child to write between fork and exec,
    /// where allocating is not allowed.
    procs_files: Vec<CString>,
}

impl ExecCgroup {
    fn new(v1: bool) -> Self {
        Self {
            v1,
            dirs: Vec::new(),
            procs_files: Vec::new(),
        }
    }

    fn add_dir(&mut self, dir: PathBuf) -> Result<PathBuf, CgroupError> {
        fs::create_dir(&dir).map_err(at(&dir))?;
        self.dirs.push(dir.clone());
        let procs = dir.join("cgroup.procs");
        self.procs_files
            .push(CString::new(procs.as_os_str().as_bytes()).expect("cgroup paths have no NUL"));
        Ok(dir)
    }

    pub fn procs_files(&self) -> Vec<CString> {
        self.procs_files.clone()
    }

    /// Moves a running process (and the children it starts from now on) into this cgroup.
    pub fn adopt(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string()).map_err(at(&procs))?;
        }
        Ok(())
    }

    /// Reads the OOM counter, peak memory and CPU time.
    pub fn report(&self) -> CgroupReport {
        let first = &self.dirs[0];
        let (oom_file, peak_file) = if self.v1 {
            ("memory.oom_control", "memory.max_usage_in_bytes")
        } else {
            ("memory.events", "memory.peak")
        };
        CgroupReport {
            oom_killed: keyed(&first.join(oom_file), "oom_kill").unwrap_or(0) > 0,
            peak_memory_bytes: read_u64(&first.join(peak_file)),
            cpu: self.cpu(),
        }
    }

    /// CPU time of everything in the cgroup so far.
    pub fn cpu(&self) -> Option<Duration> {
        if self.v1 {
            let cpuacct = self.dirs.get(2)?;
            read_u64(&cpuacct.join("cpuacct.usage")).map(Duration::from_nanos)
        } else {
            keyed(&self.dirs.first()?.join("cpu.stat"), "usage_usec").map(Duration::from_micros)
        }
    }

    /// SIGKILLs every process still in the cgroup (orphans a script left behind included), as
    /// the first directory lists them (see [`Self::process_lists`]).
    pub fn kill_all(&self) {
        // Nothing to do once every directory is removed (a destroyed cgroup, then dropped).
        let Some(first) = self.dirs.first() else {
            return;
        };
        if !self.v1 && fs::write(first.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for pid in pids_in(first) {
            // SAFETY: kill(2) with a pid read from the cgroup and a constant signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    fn is_empty(&self) -> bool {
        self.process_list().is_empty()
    }

    /// Its process list, to look at from another thread: the first directory's. Under cgroup v1
    /// the others (pids, cpuacct) list the same processes: each process is written into every
    /// directory, the first first, its children start in all of them, and only root could move
    /// one out of some. Each read of a v1 `cgroup.procs` builds and sorts a list in the kernel
    /// and queues work to free it, so one list is read, not three.
    pub fn process_list(&self) -> ProcessList {
        ProcessList(self.dirs.first().cloned())
    }

    /// Kills what is left, waits briefly for the kernel to let go, and removes the directories.
    /// A cgroup whose last process is still being released refuses removal (EBUSY) a little
    /// after its process list is empty: each directory is tried again until it goes. True
    /// when every directory went: then no process of the cgroup is alive.
    pub async fn destroy(mut self) -> bool {
        for _ in 0..100 {
            if self.try_remove() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.remove_dirs();
        false
    }

    /// Kills what is left and, once no process is listed, removes every directory the kernel
    /// lets go of; true when none is left.
    fn try_remove(&mut self) -> bool {
        self.kill_all();
        if self.is_empty() {
            self.dirs.retain(|dir| fs::remove_dir(dir).is_err());
        }
        self.dirs.is_empty()
    }

    fn remove_dirs(&mut self) {
        for dir in self.dirs.drain(..) {
            if let Err(error) = fs::remove_dir(&dir) {
                tracing::warn!(path = %dir.display(), %error, "could not remove a cgroup");
            }
        }
    }
}

impl Drop for ExecCgroup {
    /// A cgroup never outlives its sandbox, even one dropped without `destroy` (a spare at
    /// shutdown or when its template is replaced). Killed processes take a moment to leave, and
    /// an emptied cgroup a moment more to be removable; wait briefly, as `destroy` would.
    fn drop(&mut self) {
        for _ in 0..50 {
            if self.try_remove() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.remove_dirs();
    }
}

/// Removes execution cgroups left by a service process that no longer exists (a crash).
pub(super) fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|name| name.strip_prefix("exec-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            for pid in pids_in(&entry.path()) {
                // SAFETY: kill(2) with a pid read from the stale cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// The process list of one execution's cgroup (see [`ExecCgroup::process_list`]): none once
/// its directories are removed.
#[derive(Clone, Debug)]
pub struct ProcessList(Option<PathBuf>);

impl ProcessList {
    /// Whether no process is left (zombies are not listed).
    pub fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// The processes in it, zombies not listed.
    pub fn pids(&self) -> Vec<i32> {
        self.0.as_deref().map(pids_in).unwrap_or_default()
    }
}

fn pids_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads `key value` lines (memory.events, memory.oom_control, cpu.stat).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keyed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("memory.events");
        fs::write(&file, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").expect("write");
        assert_eq!(keyed(&file, "oom_kill"), Some(1));
        assert_eq!(keyed(&file, "oom"), Some(1));
        assert_eq!(keyed(&file, "missing"), None);
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name(), unique_name());
    }

    /// A cgroup v2 execution cgroup has one directory; once `destroy` has removed it, the value
    /// is dropped with none, and must not fail then. (Indexing the first directory there took
    /// the service down at start on cgroup v2, which only the VM check runs.)
    #[test]
    fn a_cgroup_v2_without_directories_can_be_used_and_dropped() {
        let mut emptied = ExecCgroup {
            v1: false,
            dirs: Vec::new(),
            procs_files: Vec::new(),
        };
        emptied.kill_all();
        assert_eq!(emptied.cpu(), None);
        assert!(emptied.try_remove(), "nothing is left to remove");
        drop(emptied);
    }
}
