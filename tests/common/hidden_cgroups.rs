//! nsjail in a container started without `--privileged`: the cgroup hierarchy is there but
//! cannot be written, so the service gets no per-execution cgroups and the process and memory
//! limits fall back to rlimits. Here, a private mount namespace (entered as root) with an empty
//! read-only tmpfs over `/sys/fs/cgroup` stands in for it; the test runs again inside it.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

/// Set in the environment of a process that runs with the cgroup hierarchy hidden.
pub const PROFILE_VARIABLE: &str = "PYEXEC_TEST_CGROUPS";
pub const PROFILE_HIDDEN: &str = "hidden";

/// Whether this process already runs with the cgroup hierarchy hidden (a re-executed test).
pub fn active() -> bool {
    std::env::var(PROFILE_VARIABLE).is_ok_and(|value| value == PROFILE_HIDDEN)
}

/// Runs one test of this binary again, by its full name, with the cgroup hierarchy hidden, and
/// fails unless it ran and passed there.
pub fn rerun_with_cgroups_hidden(test_path: &str) {
    use std::os::unix::process::CommandExt;
    let name = test_path
        .split_once("::")
        .map_or(test_path, |(_, rest)| rest);
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = std::process::Command::new(exe);
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(PROFILE_VARIABLE, PROFILE_HIDDEN);
    // SAFETY: `hide` only makes system calls on static data.
    unsafe { command.pre_exec(hide) };
    let output = command.output().expect("the test binary starts again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- with the cgroup hierarchy hidden ---\n{stdout}\n{stderr}");
    assert!(output.status.success(), "{name} failed with cgroups hidden");
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run with cgroups hidden (filter matched nothing?)"
    );
}

/// Between fork and exec: a mount namespace of its own, nothing propagating back, and an empty
/// read-only tmpfs where the cgroup hierarchy was.
fn hide() -> std::io::Result<()> {
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: unshare and mount with static NUL-terminated strings.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"tmpfs".as_ptr(),
            c"/sys/fs/cgroup".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=4k".as_ptr().cast(),
        ))?;
    }
    Ok(())
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
