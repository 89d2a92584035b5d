//! The memory of the service and everything it started (templates, sandboxes, scripts): RSS
//! and PSS summed over the service's pid and its descendants, from /proc/<pid>/smaps_rollup,
//! and the physical pages the tree maps, each counted once, from /proc/<pid>/pagemap.
//!
//! RSS counts a page shared by several processes once per process, so forks of a template
//! that share its pandas overstate; PSS splits each shared page among its sharers, so its sum
//! is what the tree really holds when every sharer is read. Under load it is not: a sample
//! lists the tree, then reads each process, and a fork started in between already holds a
//! share of the template's pages that no one reads (the sums then fall below idle). The count
//! of distinct pages has no such gap: the template's pages are counted through the template,
//! and a fork missed loses only the pages it copied.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::procs::descendants;

/// How often the peak is sampled. Reading smaps_rollup walks each process's page tables, which
/// costs the CPU the load also wants (about a tenth of the seed example's rate from 8 clients on
/// two cores), so the peak is read under a load phase whose rate is not reported.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// RSS and PSS sums, and the distinct pages mapped, in MiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_mib: f64,
    pub pss_mib: f64,
    pub unique_mib: f64,
}

/// The tree's memory right now. Processes that share one address space (a PID namespace's
/// waiting first process and the child that goes on in its memory) count it once.
pub fn tree(root: u32) -> Memory {
    let (mut rss, mut pss) = (0u64, 0u64);
    let mut counted: Vec<u32> = Vec::new();
    let mut frames = HashSet::new();
    for pid in std::iter::once(root).chain(descendants(root)) {
        add_frames(pid, &mut frames);
        if counted.iter().any(|&other| same_memory(pid, other)) {
            continue;
        }
        counted.push(pid);
        // A process that ended between the listing and the read counts as nothing.
        if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            rss += field_kib(&rollup, "Rss:");
            pss += field_kib(&rollup, "Pss:");
        }
    }
    Memory {
        rss_mib: rss as f64 / 1024.0,
        pss_mib: pss as f64 / 1024.0,
        unique_mib: (frames.len() * PAGE) as f64 / (1024.0 * 1024.0),
    }
}

/// x86_64's page, the unit of pagemap.
const PAGE: usize = 4096;

/// Adds the frame number of every page `pid` has present in memory. pagemap holds one 64-bit
/// entry per virtual page: bit 63 present, bits 0-54 the frame (zero unless read by root).
/// Mappings no access can touch (`---p`: guard pages, reserved address space) hold none and are
/// skipped; a process gone meanwhile adds nothing.
fn add_frames(pid: u32, frames: &mut HashSet<u64>) {
    const PRESENT: u64 = 1 << 63;
    const FRAME: u64 = (1 << 55) - 1;
    let (Ok(maps), Ok(pagemap)) = (
        std::fs::read_to_string(format!("/proc/{pid}/maps")),
        std::fs::File::open(format!("/proc/{pid}/pagemap")),
    ) else {
        return;
    };
    let mut entries = Vec::new();
    for (start, end) in maps.lines().filter_map(touchable_range) {
        entries.resize((end - start) / PAGE * 8, 0u8);
        // [vsyscall] and a mapping gone meanwhile fail to read: they add nothing.
        if pagemap
            .read_exact_at(&mut entries, (start / PAGE * 8) as u64)
            .is_err()
        {
            continue;
        }
        for entry in entries.chunks_exact(8) {
            let entry = u64::from_ne_bytes(entry.try_into().expect("8 bytes"));
            if entry & PRESENT != 0 && entry & FRAME != 0 {
                frames.insert(entry & FRAME);
            }
        }
    }
}

/// The address range of one line of /proc/<pid>/maps, unless no access can touch it.
fn touchable_range(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    if fields.next()?.starts_with("---") {
        return None;
    }
    let address = |hex| usize::from_str_radix(hex, 16).ok();
    Some((address(start)?, address(end)?))
}

/// Whether two processes share one address space (kcmp's KCMP_VM; the benchmark runs as root).
fn same_memory(a: u32, b: u32) -> bool {
    // linux/kcmp.h: KCMP_FILE is 0, KCMP_VM 1. With 0 this compared the two processes' fd 0,
    // and every process whose stdin was the same open file was counted as sharing memory.
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp compares two processes' kernel objects; no memory is passed.
    unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a as libc::c_long,
            b as libc::c_long,
            KCMP_VM,
            0,
            0,
        ) == 0
    }
}

fn field_kib(rollup: &str, name: &str) -> u64 {
    rollup
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Samples [`tree`] on a thread of its own (not the runtime's, whose two workers drive the
/// load) until stopped; the peak of each sum, which may come from different samples.
#[derive(Debug)]
pub struct PeakWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Memory>,
}

impl PeakWatch {
    pub fn start(root: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = Memory::default();
            while !stopped.load(Ordering::Relaxed) {
                let now = tree(root);
                peak.rss_mib = peak.rss_mib.max(now.rss_mib);
                peak.pss_mib = peak.pss_mib.max(now.pss_mib);
                peak.unique_mib = peak.unique_mib.max(now.unique_mib);
                // The sampling interval, not a wait for anything.
                std::thread::sleep(SAMPLE_EVERY);
            }
            peak
        });
        Self { stop, thread }
    }

    pub fn stop(self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
