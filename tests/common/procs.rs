//! Finding host processes by a marker in their command line: shared by the test binaries that
//! check nothing a script started outlives its execution.

use std::time::Duration;

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Waits (briefly: the kernel reaps killed processes asynchronously) until no process carries
/// `marker`; returns what is left.
pub async fn survivors(marker: &str) -> Vec<String> {
    for _ in 0..30 {
        let found = processes_with(marker);
        if found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processes_with(marker)
}
