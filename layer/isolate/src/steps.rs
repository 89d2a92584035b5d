//! Running a [`Spec`]: only system calls on prepared data, in an order where each step still
//! has the rights it needs: limits, identity and namespaces first, then mounts and
//! capabilities, no_new_privs, Landlock, and seccomp last (so the filter never has to allow the
//! calls that install the other layers).
//!
//! Apart from [`Namespaces`] (only a template's child, which may allocate, has any), nothing here
//! allocates: the service also runs these steps between fork and exec.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

use crate::fdpass;
use crate::spec::{Identity, Namespaces, Rlimit, Spec};

/// The fds some steps use, open in the calling process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fds {
    /// A Landlock ruleset prepared by the service, enforced here.
    pub landlock: Option<RawFd>,
    /// Where the signal guard's listener is sent (`Spec::signal_guard`).
    pub listener_socket: Option<RawFd>,
}

impl Spec {
    /// Both halves in one process: a sandbox without a new PID namespace.
    pub fn apply(&self, fds: Fds) -> io::Result<()> {
        self.enter()?;
        self.confine(fds)
    }

    /// The first half: limits, identity and the new namespaces. With [`Spec::namespaces`], the
    /// caller must then fork and run [`Spec::confine`] in the child, the first process of the
    /// new PID namespace.
    pub fn enter(&self) -> io::Result<()> {
        // The open-files limit comes last (in `confine`): until exec, a child of the service
        // still holds every fd of the service, so fds created below may get high numbers.
        apply_rlimits(&self.rlimits, |limit| {
            !is_open_files(limit) && !is_processes(limit)
        })?;
        // Under memory pressure the kernel kills the script, never its template or the service:
        // the score is inherited by every process after. Only where this process may write its
        // own /proc files: as root (which also keeps the script from lowering it again), or in
        // a new user namespace (below). An undumpable process of an unprivileged uid (Lambda)
        // cannot, and must not be made dumpable to (a script of that uid runs beside it).
        if self.first_for_oom {
            let _ = write_file(c"/proc/self/oom_score_adj", OOM_SCORE_ADJ);
        }
        if let Some(identity) = self.identity {
            let retained = self.retained_capabilities;
            if retained != 0 {
                keep_only(retained)?;
            }
            become_user(identity)?;
            if retained != 0 {
                raise_as_ambient(retained)?;
            }
        }
        if let Some(namespaces) = &self.namespaces {
            enter_namespaces(namespaces)?;
        }
        // The kernel counts RLIMIT_NPROC per user and user namespace: set in an execution's own
        // nested namespace, it counts that execution's processes alone, never its template's,
        // its spares' or a neighbour's, which share the jail's uid.
        apply_rlimits(&self.rlimits, is_processes)
    }

    /// The second half: fresh mounts and no capabilities (in namespaces), working directory,
    /// no_new_privs, Landlock, seccomp, the signal guard, and the open-files limit.
    pub fn confine(&self, fds: Fds) -> io::Result<()> {
        if self.namespaces.is_some() {
            mount_fresh_tmp_and_proc(self.namespaces.as_ref())?;
        }
        // No capability survives into a script: neither a nested user namespace's nor those a
        // template kept to switch its children to their uids.
        if self.retained_capabilities == 0 {
            drop_capabilities()?;
        }
        if let Some(workdir) = &self.workdir {
            // SAFETY: chdir to a prepared NUL-terminated path.
            check(unsafe { libc::chdir(workdir.as_ptr()) })?;
        }
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments. Needed by both Landlock and seccomp for an
            // unprivileged process, and it keeps execve from ever granting privileges again.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        if let Some(ruleset) = fds.landlock {
            // SAFETY: a ruleset fd and no flags; no_new_privs is set above.
            let result = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
            check(result as libc::c_int)?;
        }
        for program in &self.seccomp {
            install_filter(program, 0)?;
        }
        // Last: from here on, a signal to another pid waits for the service's answer.
        if let (Some(program), Some(socket)) = (&self.signal_guard, fds.listener_socket) {
            let listener = install_filter(program, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
            let sent = fdpass::send(socket, fdpass::LISTENER, &[listener]);
            // SAFETY: closing the listener this function created; the service has its copy.
            unsafe { libc::close(listener) };
            sent?;
        }
        apply_rlimits(&self.rlimits, is_open_files)
    }
}

fn is_open_files(limit: &Rlimit) -> bool {
    limit.resource == libc::RLIMIT_NOFILE
}

fn is_processes(limit: &Rlimit) -> bool {
    limit.resource == libc::RLIMIT_NPROC
}

/// The highest `oom_score_adj`: the first process the OOM killer picks.
const OOM_SCORE_ADJ: &[u8] = b"1000";

fn apply_rlimits(rlimits: &[Rlimit], which: impl Fn(&Rlimit) -> bool) -> io::Result<()> {
    for limit in rlimits.iter().filter(|limit| which(limit)) {
        let value = libc::rlimit {
            rlim_cur: limit.value,
            rlim_max: limit.value,
        };
        // SAFETY: a resource number and a pointer to a live struct.
        check(unsafe { libc::setrlimit(limit.resource, &value) })?;
    }
    Ok(())
}

/// Drops root for good: no supplementary groups, then the gid, then the uid (in that order,
/// as changing the uid first would take away the right to change the others).
fn become_user(identity: Identity) -> io::Result<()> {
    // SAFETY: plain credential system calls with integer arguments.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(identity.gid, identity.gid, identity.gid))?;
        check(libc::setresuid(identity.uid, identity.uid, identity.uid))?;
    }
    Ok(())
}

/// A user namespace of its own nested in the jail's, mapping the jail's only id to itself (so
/// the script stays the unprivileged 65534, and the capabilities the new namespace grants
/// reach nothing outside it), then every other namespace nsjail gives a jail.
fn enter_namespaces(namespaces: &Namespaces) -> io::Result<()> {
    // SAFETY: unshare with flags only.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER) })?;
    // An undumpable process's /proc files belong to root, so it could not write its own maps
    // (nor its OOM score): dumpable for these writes only. Nothing that could exploit it sees
    // this process: inside the jail, every script runs in a PID namespace nested below it.
    set_dumpable(true)?;
    let id = namespaces.id;
    let mapped = write_file(c"/proc/self/uid_map", format!("{id} {id} 1\n").as_bytes())
        .and_then(|()| write_file(c"/proc/self/setgroups", b"deny"))
        .and_then(|()| write_file(c"/proc/self/gid_map", format!("{id} {id} 1\n").as_bytes()))
        .and_then(|()| write_file(c"/proc/self/oom_score_adj", OOM_SCORE_ADJ));
    set_dumpable(false)?;
    mapped?;
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    // SAFETY: unshare with flags only.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// A private `/tmp` and a `/proc` of the new PID namespace (so the script sees only its own
/// processes), neither propagating anywhere.
fn mount_fresh_tmp_and_proc(namespaces: Option<&Namespaces>) -> io::Result<()> {
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: mount(2) with static or prepared NUL-terminated strings.
    unsafe {
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        let options = namespaces.map_or(none, |n| n.tmp_options.as_ptr());
        check(libc::mount(
            c"tmpfs".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.cast(),
        ))?;
        // Read-only and no suid/dev/exec: the kernel only lets a user namespace mount a proc
        // no less restricted than the jail's own.
        let proc_flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        check(libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            proc_flags,
            std::ptr::null(),
        ))?;
    }
    Ok(())
}

/// No capability left in any set, none to gain back: the nested user namespace granted them
/// all for the mounts above, and a script must have none.
fn drop_capabilities() -> io::Result<()> {
    // SAFETY: prctl with integer arguments; capset with a valid header and two data structs.
    unsafe {
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ))?;
        for capability in 0..=63 {
            // Past the last capability this kernel knows, it answers EINVAL: done.
            if libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 {
                break;
            }
        }
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData::default(); 2];
        let result = libc::syscall(libc::SYS_capset, &mut header, data.as_ptr());
        check(result as libc::c_int)?;
    }
    Ok(())
}

/// Before leaving root: every capability out of the bounding set but `retained` (which needs
/// root's CAP_SETPCAP), and the permitted set kept through the uid change.
fn keep_only(retained: u64) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        for capability in 0..=63u64 {
            if retained & (1 << capability) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) != 0
            {
                // Past the last capability this kernel knows: EINVAL, done.
                break;
            }
        }
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
    }
    Ok(())
}

/// After the uid change: `retained` effective, permitted, inheritable and ambient, so it
/// survives exec (an unprivileged program's permitted set after exec is its ambient set).
fn raise_as_ambient(retained: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |shift: u32| (retained >> shift) as u32;
    let data = [0, 32].map(|shift| CapData {
        effective: word(shift),
        permitted: word(shift),
        inheritable: word(shift),
    });
    // SAFETY: capset with a valid header and two data structs; prctl with integer arguments.
    unsafe {
        let result = libc::syscall(libc::SYS_capset, &mut header, data.as_ptr());
        check(result as libc::c_int)?;
        for capability in (0..=63u64).filter(|capability| retained & (1 << capability) != 0) {
            check(libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                capability,
                0,
                0,
            ))?;
        }
    }
    Ok(())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Installs one filter; with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, returns the listener's fd.
fn install_filter(program: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<RawFd> {
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(2) reads the program through a valid pointer for the call's duration.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    check(result as libc::c_int)
}

fn set_dumpable(dumpable: bool) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    })
    .map(drop)
}

fn write_file(path: &CStr, content: &[u8]) -> io::Result<()> {
    // SAFETY: open, write and close on a prepared path and buffer.
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
        let written = libc::write(fd, content.as_ptr().cast(), content.len());
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written != content.len() as isize {
            return Err(error);
        }
    }
    Ok(())
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}
