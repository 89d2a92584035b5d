//! How `make bench`'s profile sorts perf's samples into the stages of a request: the rules, as a
//! table, and the samples they are tried on.

use std::collections::HashMap;

/// Which processes a rule applies to: the service itself (its pid as the sample's process), or
/// everything below it (nsjail, the templates, their forked executions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum In {
    Service,
    Sandbox,
    Any,
}

/// What a sample whose process is the service, or one below it, falls to when no rule matched.
pub(super) const SERVICE_OTHER: &str = "service: other";
pub(super) const SANDBOX_OTHER: &str = "sandbox: other";

/// The stages, as rules tried in order on each sample: the first rule with a frame whose symbol
/// or file contains one of its patterns takes the sample. Most specific first: a page fault taken
/// while forking is the fork's, a system call interrupted by seccomp's filter is seccomp's. A
/// stage may have several rules (cgroups: one for both sides, one for the service's own file
/// work). Kernel names are Linux 6.x's. User-space stacks stop early (neither the service nor
/// Python keeps frame pointers), so some rules name a C library call rather than its caller,
/// with a comment saying what, on this path, that call is.
const RULES: &[(&str, In, &[&str])] = &[
    (
        "fork (template copies itself)",
        In::Sandbox,
        &["copy_process", "dup_mmap", "__do_sys_clone", "kernel_clone"],
    ),
    (
        "exit (address space torn down)",
        In::Sandbox,
        &["do_exit", "exit_mmap", "do_group_exit"],
    ),
    (
        "copy-on-write and page faults",
        In::Sandbox,
        &["exc_page_fault", "do_wp_page", "handle_mm_fault"],
    ),
    (
        "namespaces",
        In::Any,
        &[
            "unshare",
            "copy_namespaces",
            "create_new_namespaces",
            "setns",
            "copy_net_ns",
            // A user namespace's id maps, written through /proc.
            "uid_map",
            "gid_map",
            "setgroups",
            // A kernel worker's, so with perf attached to the tree only, never seen: the
            // network namespaces' teardown is missing from these figures.
            "cleanup_net",
        ],
    ),
    (
        "mounts",
        In::Any,
        &[
            "__x64_sys_mount",
            "do_mount",
            "path_mount",
            "umount",
            "pivot_root",
        ],
    ),
    (
        "cgroups",
        In::Any,
        &[
            "cgroup_mkdir",
            "cgroup_rmdir",
            "cgroup_attach_task",
            "cgroup_procs_write",
            "ExecCgroup",
        ],
    ),
    (
        "cgroups",
        In::Service,
        &[
            // Cgroup v1 and v2 files are kernfs files, and the service reads no other kind
            // (sysfs) under load: its reads of cgroup.procs, cpuacct.usage, memory.*.
            "kernfs",
            "::cgroup::",
            // The service makes and removes directories only in the cgroup hierarchies (an
            // execution's cgroup); strace shows no other mkdir or rmdir under load.
            "do_mkdirat",
            "do_rmdir",
        ],
    ),
    (
        "seccomp and Landlock",
        In::Any,
        // Landlock's check of each file opened, under names of its own.
        &[
            "seccomp",
            "landlock",
            "is_access_to_paths_allowed",
            "hook_file_open",
        ],
    ),
    (
        "/proc reads (watch, reaper, teardown)",
        In::Service,
        &[
            "proc_",
            "do_task_stat",
            "pid_revalidate",
            "pid_delete_dentry",
            "next_tgid",
            "procfs",
            "reaper",
            "watch::Watch",
            // The service's files left, once cgroup files are taken above, are /proc's:
            // /proc/<pid>/stat for every process (strace: about a hundred per request, so
            // nine opens in ten), /proc/self/fdinfo, the listing of /proc. Their opening,
            // reading and closing shows these frames without a /proc one.
            "std::fs::read_to_string",
            "std::fs::read_dir",
            "ReadDir",
            "seq_read",
            "__GI___libc_open",
            "__GI___getdents64",
        ],
    ),
    (
        // Under compat, before an execution answers, the entries of /tmp its uid owns are
        // removed: /tmp read through getdents64 and each entry's owner through fstatat (the
        // listings of /proc are taken above).
        "service: scrubbing /tmp of leftovers (compat)",
        In::Service,
        &["scrub", "leftovers", "getdents64", "fstatat"],
    ),
    (
        "HTTP and JSON",
        In::Service,
        &[
            "hyper",
            "serde",
            "http::",
            "httparse",
            "axum",
            "h2::",
            "tower",
            "mio::net::tcp",
            "tcp_",
            "inet_",
            "__netif_receive_skb",
        ],
    ),
    (
        "service: handing executions to templates (pipes, socket)",
        In::Service,
        &[
            "zygote::",
            "pipes::",
            // An execution's stdout, stderr and result pipes, and the socket pair and
            // messages a fork request travels with: the service's only pipes and unix
            // sockets under load.
            "pipe2",
            "socketpair",
            "sendmsg",
            "recvmsg",
        ],
    ),
    (
        "service: teardown (signals, waits)",
        In::Service,
        &[
            "teardown::",
            "__x64_sys_kill",
            "kill_something_info",
            "pidfd_send_signal",
            "wait4",
            "waitid",
        ],
    ),
    (
        "service: memory allocation (malloc, free)",
        In::Service,
        &[
            "malloc",
            "_int_free",
            "cfree",
            "realloc",
            "calloc",
            "unlink_chunk",
            "__rdl_",
        ],
    ),
    (
        "service: async runtime (tokio, epoll, futex)",
        In::Service,
        &["tokio::", "epoll", "futex"],
    ),
    (
        // What is left of the sandbox's time in the kernel: the harness opening files,
        // receiving fork requests on its socket, setsid, pidfds, writing its answer.
        "system calls of the script and harness",
        In::Sandbox,
        &["entry_SYSCALL_64"],
    ),
    (
        // The interpreter, the C libraries it calls (malloc, memcpy) and the dynamic loader's
        // lazy binding in a fresh fork; numpy's and pandas's own code lives under python too.
        "the script and harness (Python)",
        In::Sandbox,
        &["_PyEval", "Py", "python", "libc.so", "libm.so", "ld-linux"],
    ),
];

/// One sample: its process (the thread group's id) and its stack, leaf first.
#[derive(Debug)]
pub(super) struct Sample {
    pub(super) pid: u32,
    pub(super) frames: Vec<Frame>,
}

#[derive(Debug)]
pub(super) struct Frame {
    pub(super) symbol: String,
    /// The binary or library the address is in (`[kernel.kallsyms]`, `/lib/.../libc.so.6`).
    pub(super) file: String,
}

impl Frame {
    pub(super) fn matches(&self, patterns: &[&str]) -> bool {
        patterns
            .iter()
            .any(|pattern| self.symbol.contains(pattern) || self.file.contains(pattern))
    }

    /// An address perf could not place at all: an unwinder's guess past the real stack (code
    /// without frame pointers), nothing worth a box in a flame graph.
    pub(super) fn is_noise(&self) -> bool {
        self.symbol == "[unknown]" && self.file == "[unknown]"
    }

    /// The frame as a flame graph shows it: an unnamed address by its file (`[python3]`), as
    /// inferno's own folding does; no `;`, which separates frames (Rust's `[u8; 4]` has one).
    pub(super) fn name(&self) -> String {
        if self.symbol == "[unknown]" {
            let file = self.file.rsplit('/').next().unwrap_or(&self.file);
            return format!("[{}]", file.trim_matches(['[', ']']));
        }
        self.symbol.replace(';', ",")
    }
}

/// The stage that takes `sample`: the first rule matching, else the other of its process.
pub(super) fn stage_of(sample: &Sample, service: u32) -> &'static str {
    let side = if sample.pid == service {
        In::Service
    } else {
        In::Sandbox
    };
    let applies = |who: In| who == In::Any || who == side;
    let matched = RULES.iter().find(|(_, who, patterns)| {
        applies(*who) && sample.frames.iter().any(|frame| frame.matches(patterns))
    });
    match (matched, side) {
        (Some((stage, _, _)), _) => stage,
        (None, In::Service) => SERVICE_OTHER,
        (None, _) => SANDBOX_OTHER,
    }
}

/// Samples per stage, the largest first.
pub(super) fn stages(samples: &[Sample], service: u32) -> Vec<(&'static str, usize)> {
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for sample in samples {
        *counts.entry(stage_of(sample, service)).or_default() += 1;
    }
    let mut stages: Vec<_> = counts.into_iter().collect();
    stages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    stages
}
