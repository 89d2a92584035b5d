//! Where the template path's CPU goes, per request, under load: Linux `perf` samples the whole
//! machine while 8 clients send the seed's numpy/pandas script, the samples of the service and
//! every process below it (by the fork records perf keeps) are kept, each sample
//! goes to one stage (the template forking, page faults, namespaces, /proc reads, the script
//! itself...) by the first rule its stack matches, and each stage's CPU is divided by the
//! requests answered. The same stacks, folded, make a flame graph:
//! target/bench/flamegraph-<sandbox>.svg, its folded text beside it.
//!
//! perf records only during a load phase of its own, so what it costs (every fork copies its
//! counters, every sample walks a stack) is in no other figure. Where perf is missing or the
//! kernel refuses it (perf_event_paranoid, no root), a note says why and the row shows a dash.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::http::Load;
use crate::lambda_support::repo_root;
use crate::report::{Figures, Kind};

#[path = "profile_stages.rs"]
mod stages;

use stages::{stages, Frame, Sample};

/// The row in the side-by-side table (the cold path has none: a dash).
pub const ROW: &str = "numpy/pandas, 8 clients: CPU ms per request (perf)";
/// Samples per second of each process's CPU time. Odd, so sampling does not keep step with
/// timers firing at round rates (the service's watch, tokio's ticks) and over- or under-count
/// them.
const HZ: u32 = 499;
/// How long perf may take to acknowledge "enable" or "disable" (attaching to the tree included).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How long perf may take, once interrupted, to write its data and exit.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// The CPU of one sandbox's template path under load, by stage.
#[derive(Debug)]
pub struct Breakdown {
    /// Requests answered 200 in the profiled phase, and the others.
    pub requests: usize,
    pub errors: usize,
    /// Samples per stage, the largest first; stages without a sample are left out.
    pub stages: Vec<(&'static str, usize)>,
    pub flamegraph: PathBuf,
}

impl Breakdown {
    pub fn samples(&self) -> usize {
        self.stages.iter().map(|(_, samples)| samples).sum()
    }

    /// What `samples` come to per answered request, in CPU ms: each sample stands for 1/HZ s
    /// of one process's CPU time (perf samples a fixed-period clock, see [`Recorder::start`]).
    pub fn ms_per_request(&self, samples: usize) -> Option<f64> {
        let per_second = f64::from(HZ);
        (self.requests > 0).then(|| samples as f64 / per_second * 1000.0 / self.requests as f64)
    }

    pub fn share(&self, samples: usize) -> f64 {
        100.0 * samples as f64 / self.samples().max(1) as f64
    }
}

/// Runs `load` while perf records the tree under `root`: the total CPU per request as a row of
/// `figures`, the stages in `figures.cpu`, and the flame graph on disk. A failure of perf's is a
/// note and a dash; the load is not run then (nothing else reads it).
pub async fn measure(
    root: u32,
    sandbox: &str,
    load: impl Future<Output = Load>,
    figures: &mut Figures,
) {
    match profile(root, sandbox, load).await {
        Ok(breakdown) => {
            let total = breakdown.ms_per_request(breakdown.samples());
            figures.push(ROW, Kind::Lower, total);
            eprintln!("   flame graph: {}", breakdown.flamegraph.display());
            figures.cpu = Some(breakdown);
        }
        Err(reason) => {
            figures.push(ROW, Kind::Lower, None);
            figures
                .notes
                .push(format!("CPU per request (perf): {reason}"));
        }
    }
}

async fn profile(
    root: u32,
    sandbox: &str,
    load: impl Future<Output = Load>,
) -> Result<Breakdown, String> {
    let work = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let data = work.path().join("perf.data");
    let recorder = Recorder::start(work.path(), &data).await?;
    let load = load.await;
    recorder.stop().await?;
    let text = script(&data, &symbol_root(work.path())?).await?;
    let samples = of_tree(parse(&text), root);
    if samples.is_empty() {
        return Err("perf recorded no sample".into());
    }
    let flamegraph = draw(&samples, root, sandbox)?;
    Ok(Breakdown {
        requests: load.latencies.len(),
        errors: load.errors,
        stages: stages(&samples, root),
        flamegraph,
    })
}

/// The samples of `root` and every process below it, by the parents perf recorded (the
/// processes there at its start, and every fork after).
fn of_tree((samples, parents): (Vec<Sample>, HashMap<u32, u32>), root: u32) -> Vec<Sample> {
    let mut tree = HashSet::from([root]);
    loop {
        let before = tree.len();
        for (child, parent) in &parents {
            if tree.contains(parent) {
                tree.insert(*child);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    samples
        .into_iter()
        .filter(|sample| tree.contains(&sample.pid))
        .collect()
}

/// `perf record` on the whole machine, its events enabled only between [`Recorder::start`] and
/// [`Recorder::stop`] (through its control FIFO, which it acknowledges), so neither its start
/// (attaching to every thread) nor its end falls into the load's time.
struct Recorder {
    perf: Child,
    control: File,
    acks: pipe::Receiver,
    /// perf's own output: its error, should it fail.
    log: PathBuf,
}

impl Recorder {
    async fn start(work: &Path, data: &Path) -> Result<Self, String> {
        let (control, acks) = (work.join("control"), work.join("acks"));
        make_fifo(&control)?;
        make_fifo(&acks)?;
        let log = work.join("perf.log");
        let output = File::create(&log).map_err(|e| format!("perf's log: {e}"))?;
        let perf = Command::new("perf")
            // cpu-clock, not the default cycles: a clock samples every 1/HZ s of CPU time
            // exactly, so a sample count is a CPU time; cycles (where the machine has them)
            // move their period around to approach HZ.
            .args(["record", "-e", "cpu-clock", "-g", "-F", &HZ.to_string()])
            // Events off until "enable"; no copies of the binaries into ~/.debug.
            .args(["-D", "-1", "--no-buildid-cache"])
            .arg(format!(
                "--control=fifo:{},{}",
                control.display(),
                acks.display()
            ))
            .arg("-o")
            .arg(data)
            // The whole machine, not `-p` on the tree: per-process counters (inherited by
            // forks) miss a process's exit, the teardown of its address space, which costs
            // about what its fork did. The tree's samples are picked out afterwards.
            .arg("-a")
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(|e| e.to_string())?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start perf: {e}"))?;
        // Both ends opened read-write, as perf opens them: neither open waits for the other side.
        let control = File::options()
            .read(true)
            .write(true)
            .open(&control)
            .map_err(|e| format!("perf's control FIFO: {e}"))?;
        let acks = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&acks)
            .map_err(|e| format!("perf's acknowledgement FIFO: {e}"))?;
        let mut recorder = Self {
            perf,
            control,
            acks,
            log,
        };
        recorder.command("enable").await?;
        Ok(recorder)
    }

    /// Sends `command` and waits for perf's "ack"; perf exiting instead (it cannot attach) or
    /// not answering in time is an error that carries perf's output.
    async fn command(&mut self, command: &str) -> Result<(), String> {
        let sent = self.control.write_all(format!("{command}\n").as_bytes());
        sent.map_err(|e| format!("cannot send {command:?} to perf: {e}"))?;
        let mut answer = [0u8; 16];
        let (acks, perf) = (&mut self.acks, &mut self.perf);
        let acknowledged = tokio::select! {
            read = tokio::time::timeout(ANSWER_WITHIN, acks.read(&mut answer)) => {
                matches!(read, Ok(Ok(n)) if answer[..n].starts_with(b"ack"))
            }
            _ = perf.wait() => false,
        };
        match acknowledged {
            true => Ok(()),
            false => Err(format!("perf did not take {command:?}: {}", self.output())),
        }
    }

    /// Disables the events, then interrupts perf (SIGINT: it writes its data out and exits) and
    /// waits for it.
    async fn stop(mut self) -> Result<(), String> {
        let disabled = self.command("disable").await;
        if let Some(pid) = self
            .perf
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
        {
            // SAFETY: kill(2) on perf, our own child, not yet reaped (so its pid is still its).
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let exited = tokio::time::timeout(EXIT_WITHIN, self.perf.wait()).await;
        disabled?;
        match exited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!("perf did not exit within {EXIT_WITHIN:?}")),
        }
    }

    /// perf's output so far, on one line (it goes into a note).
    fn output(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn make_fifo(path: &Path) -> Result<(), String> {
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: mkfifo(3) on a NUL-terminated path that outlives the call.
    match unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } {
        0 => Ok(()),
        _ => Err(format!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )),
    }
}

/// A root directory for perf to find binaries under, by the paths the sampled processes saw:
/// the host's own (a link to each of `/`'s entries), except that nsjail binds the layer's
/// Python and harness at /opt/python and /opt/harness, which the host lacks (unless the layer
/// is installed at /opt), and without which no frame of the interpreter would have a name.
fn symbol_root(work: &Path) -> Result<PathBuf, String> {
    let root = work.join("symfs");
    let opt = root.join("opt");
    std::fs::create_dir_all(&opt).map_err(|e| format!("{}: {e}", opt.display()))?;
    link_entries(Path::new("/"), &root, &["opt"])?;
    link_entries(Path::new("/opt"), &opt, &[])?;
    let layer = repo_root().join("layer/out");
    for part in ["python", "harness"] {
        if !opt.join(part).exists() {
            link(&layer.join(part), &opt.join(part))?;
        }
    }
    Ok(root)
}

/// A link in `into` to each entry of `dir` but those named in `except`.
fn link_entries(dir: &Path, into: &Path, except: &[&str]) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.filter_map(Result::ok) {
        if !except.iter().any(|name| entry.file_name() == *name) {
            link(&entry.path(), &into.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn link(target: &Path, at: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(target, at).map_err(|e| format!("{}: {e}", at.display()))
}

/// The samples as text: a header line per sample (`comm pid/tid time:`), then its stack, one
/// indented `address symbol (file)` line per frame, leaf first, and a blank line. Symbols stay
/// demangled (Rust's paths name the service's code).
async fn script(data: &Path, symbol_root: &Path) -> Result<String, String> {
    let output = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(data)
        .arg(format!("--symfs={}", symbol_root.display()))
        // The running kernel's symbols: under --symfs perf would look for them there, in vain.
        .arg("--kallsyms=/proc/kallsyms")
        .args(["-F", "comm,pid,tid,time,ip,sym,dso"])
        // Every process's parent: the ones there at the start, then each fork.
        .arg("--show-task-events")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run perf script: {e}"))?;
    if !output.status.success() {
        let error = String::from_utf8_lossy(&output.stderr);
        return Err(format!("perf script failed: {}", error.trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The samples, and each process's parent from the fork records
/// (`PERF_RECORD_FORK(child_pid:child_tid):(parent_pid:parent_tid)`; a new thread's has its own
/// process as its parent, and is left out).
fn parse(text: &str) -> (Vec<Sample>, HashMap<u32, u32>) {
    let mut samples = Vec::new();
    let mut parents = HashMap::new();
    let mut current: Option<Sample> = None;
    for line in text.lines() {
        if line.contains(": PERF_RECORD_") {
            samples.extend(current.take());
            // A new thread's record names its own process as the parent: not a process's.
            if let Some((child, parent)) = parse_fork(line).filter(|(c, p)| c != p) {
                parents.insert(child, parent);
            }
        } else if line.trim().is_empty() {
            samples.extend(current.take());
        } else if line.trim_end().ends_with(':') {
            // A sample's header (`comm pid/tid time:`), which perf may indent to align the
            // command names as much as it indents frames.
            samples.extend(current.take());
            current = parse_header(line);
        } else if let (Some(sample), Some(frame)) = (current.as_mut(), parse_frame(line)) {
            sample.frames.push(frame);
        }
    }
    samples.extend(current);
    (samples, parents)
}

fn parse_fork(line: &str) -> Option<(u32, u32)> {
    let (_, rest) = line.split_once("PERF_RECORD_FORK(")?;
    let (child, rest) = rest.split_once(':')?;
    let (_, rest) = rest.split_once("):(")?;
    let (parent, _) = rest.split_once(':')?;
    Some((child.parse().ok()?, parent.parse().ok()?))
}

/// `python3 18806/18806 10567.030574:`: the process is the pid before the `/`. A command name
/// may hold spaces (and a `/`, as `kworker/0:1`), so the first `pid/tid` from the right counts.
fn parse_header(line: &str) -> Option<Sample> {
    let pid = line
        .split_whitespace()
        .rev()
        .find_map(|token| token.split_once('/')?.0.parse().ok())?;
    Some(Sample {
        pid,
        frames: Vec::new(),
    })
}

/// `ffffffff8160f130 dup_mmap ([kernel.kallsyms])`: a symbol may hold spaces and parentheses
/// (`<T as core::future::Future>::poll`), the file is the last parenthesized part.
fn parse_frame(line: &str) -> Option<Frame> {
    let (_address, rest) = line.trim().split_once(' ')?;
    let (symbol, file) = rest.rsplit_once(" (")?;
    Some(Frame {
        symbol: symbol.to_owned(),
        file: file.strip_suffix(')')?.to_owned(),
    })
}

/// The stacks folded as flame graphs take them: root first, frames joined by `;`, under the
/// side they ran on (`service` or `sandbox`), then the count of samples with that stack.
fn fold(samples: &[Sample], service: u32) -> Vec<String> {
    let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
    for sample in samples {
        let side = if sample.pid == service {
            "service"
        } else {
            "sandbox"
        };
        let frames = sample.frames.iter().rev().filter(|frame| !frame.is_noise());
        let stack: Vec<String> = std::iter::once(side.to_owned())
            .chain(frames.map(Frame::name))
            .collect();
        *stacks.entry(stack.join(";")).or_default() += 1;
    }
    stacks
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect()
}

/// Writes target/bench/flamegraph-<sandbox>.svg and the folded stacks beside it (.folded);
/// the SVG's path.
fn draw(samples: &[Sample], service: u32, sandbox: &str) -> Result<PathBuf, String> {
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let folded = fold(samples, service);
    let text_path = dir.join(format!("flamegraph-{sandbox}.folded"));
    let text = folded
        .iter()
        .map(|line| format!("{line}\n"))
        .collect::<String>();
    std::fs::write(&text_path, text).map_err(|e| format!("{}: {e}", text_path.display()))?;
    let svg_path = dir.join(format!("flamegraph-{sandbox}.svg"));
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!("{sandbox}, template path: numpy/pandas from 8 clients");
    options.subtitle = Some(format!(
        "perf, cpu-clock at {HZ} Hz: the service and every process below it"
    ));
    options.count_name = "samples".into();
    let svg = File::create(&svg_path).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let lines = folded.iter().map(String::as_str);
    inferno::flamegraph::from_lines(&mut options, lines, BufWriter::new(svg))
        .map_err(|e| format!("the flame graph: {e}"))?;
    Ok(svg_path)
}
