//! The Cloud Run image run as a container runtime runs it: its ENTRYPOINT with its ENV and
//! PORT, as root, PID 1 of its own PID namespace, in a mount namespace where the image's
//! filesystem is the read-only root but for a fresh /tmp, with /proc, /dev and /sys (this
//! host's cgroups, v1) as a runtime provides them. util-linux's `unshare` and a few mounts do
//! what Docker would; nothing is mounted outside the namespace.

use std::process::ExitStatus;
use std::time::Duration;

use serde_json::{json, Value};

use super::Image;
use crate::lambda_support::common::binary::{Launch, Running};
use crate::lambda_support::common::ports::free_addr;

/// Runs as the namespace's first process: sets up the container's mounts, makes the image
/// (`$1`) the root, then execs the entrypoint (`$2...`) as PID 1. The root is changed with
/// pivot_root as container runtimes do, not chroot: the kernel refuses a user namespace (which
/// nsjail needs) to a chrooted process. `pivot_root . .` stacks the old root on the new one,
/// and the lazy unmount takes it away (pivot_root(2), NOTES).
const CONTAINER: &str = r#"set -e
root=$1; shift
mount --rbind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
cd "$root"
pivot_root . .
umount -l .
cd /
exec "$@"
"#;

pub struct CloudRunImage {
    base: String,
    process: Running,
    client: reqwest::Client,
}

impl CloudRunImage {
    pub fn start(image: &Image) -> Self {
        let addr = free_addr();
        let process = Launch::new("cloud-run-container", "unshare")
            .clear_env()
            // What Docker gives a debian image's process, then the image's ENV, then Cloud
            // Run's own variables.
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .envs(image.env.iter().map(|(k, v)| (k, v)))
            .env("PORT", addr.port().to_string())
            .envs([
                ("K_SERVICE", "python-executor"),
                ("K_REVISION", "python-executor-00001-abc"),
                ("K_CONFIGURATION", "python-executor"),
            ])
            .args(["--mount", "--pid", "--fork", "--kill-child", "--"])
            .args(["/bin/sh", "-c", CONTAINER, "container"])
            .arg(&image.root)
            .args(&image.entrypoint)
            .start_listening(addr, Duration::from_secs(60));
        Self {
            base: format!("http://{addr}"),
            process,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let request = self.client.get(format!("{}{path}", self.base));
        self.answer(request).await
    }

    pub async fn execute(&self, script: &str) -> (u16, Value) {
        let request = self
            .client
            .post(format!("{}/execute", self.base))
            .json(&json!({ "script": script }));
        self.answer(request).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.log()));
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    /// SIGTERM to the service (the container's PID 1), as Cloud Run stops an instance.
    pub fn terminate(&self) {
        let pid = self.service_pid();
        // SAFETY: kill(2) with a pid read from /proc just now.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {pid}");
    }

    /// How the container ended, within `within`; `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(within)
    }

    /// The service's host pid: the process below `unshare` running the image's binary.
    fn service_pid(&self) -> u32 {
        self.process
            .descendants()
            .into_iter()
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "python-executor")
            })
            .unwrap_or_else(|| panic!("the service process was not found\n{}", self.log()))
    }
}
