"""A template: the harness with its modules imported, forking one child per execution.

The service (src/sandbox/zygote/) holds the other end of the control socket on fd 3. The
template says "ready" once its imports are done, then for each message forks a child and closes
its copies of what came with it. A message is one line of JSON for the harness ({"options":
[harness options], "env": {variables}}) followed by the execution's isolation spec (encoded by
the service, read by the isolation library), with fds: the execution's stdin, stdout, stderr,
result channel and status socket, and a Landlock ruleset when there is one.

The child, before anything else, runs the isolation steps in the library the service's own
code comes from (layer/isolate, `pyexec_enter` then `pyexec_confine`): a session of its own,
its pidfd to the service (which moves it into the execution's cgroup), rlimits, identity,
namespaces, mounts, no capabilities, no_new_privs, Landlock and seccomp. Only then does it go
on as the execution's supervisor, and only then does the service hand it the job. The template
itself never reads a job, never runs a script, and receives nothing but what it forwards.
"""

import fcntl
import json
import os
import random
import signal
import socket
import sys

STATUS_FD = 4
LANDLOCK_FD = 5
MAX_MESSAGE = 1 << 20
MAX_FDS = 6
# Exit status of a child whose isolation failed: it never ran anything (the service has been
# told why on the status socket).
ISOLATION_FAILED = 71


def serve(control_fd, library, waiter):
    """Runs the template (`library` is the isolation library, harness_isolation.library();
    `waiter` the program a PID namespace's parent execs, harness_isolation.SUPERVISOR); returns
    only in a forked child, isolated, with its harness options."""
    control = socket.socket(fileno=control_fd)
    # Children are reaped by the kernel as they exit: the service watches each through a
    # pidfd, and the template never waits for one (nothing here runs between requests).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    control.send(b"ready")
    while True:
        message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, MAX_FDS)
        if not message:
            os._exit(0)  # the service is gone
        try:
            pid = os.fork()
        except OSError:
            # EAGAIN or ENOMEM: this execution has no process. Its status socket closes with
            # the fds below, which tells the service (it starts the execution another way);
            # the template goes on serving.
            pid = -1
        if pid == 0:
            control.close()
            return _become_execution(library, waiter, message, fds)
        for fd in fds:
            os.close(fd)


def _become_execution(library, waiter, message, fds):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    header_line, spec = message.split(b"\n", 1)
    header = json.loads(header_line)
    has_landlock = len(fds) > 5
    _place(fds)
    entered = library.pyexec_enter(spec, len(spec), STATUS_FD)
    if entered < 0:
        os._exit(ISOLATION_FAILED)
    if entered == 1:
        # A new PID namespace takes effect for children: the rest runs in its first process, a
        # child sharing this one's memory (no second copy of the template), while this one
        # waits for it (a small program of its own by then) and exits as it did. Where the
        # library has no such path, a fork.
        continued = library.pyexec_continue_in_namespace(STATUS_FD, os.fsencode(waiter))
        if continued < 0:
            os._exit(ISOLATION_FAILED)
        if continued == 1:
            pid = os.fork()
            if pid != 0:
                _exit_as(pid)
        renew_native_id()
    landlock = LANDLOCK_FD if has_landlock else -1
    if library.pyexec_confine(spec, len(spec), STATUS_FD, landlock) < 0:
        os._exit(ISOLATION_FAILED)
    os.close(STATUS_FD)
    if has_landlock:
        os.close(LANDLOCK_FD)
    for key, value in header["env"].items():
        os.environ[key] = value
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # found again from TMPDIR, as in a fresh interpreter
    _reseed()
    return header["options"]


def renew_native_id():
    """The main thread's kernel id as `threading` reports it: this process's own, not that of
    the process it went on from."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading.main_thread()._set_native_id()


def _place(fds):
    """stdin, stdout, stderr, the result channel, the status socket and the ruleset onto fds 0
    to 5, whatever numbers they arrived with; nothing else stays open."""
    parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(parked):
        os.dup2(fd, target)
    os.closerange(len(parked), 1 << 30)


def _exit_as(pid):
    for fd in range(LANDLOCK_FD + 1):
        try:
            os.close(fd)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def _reseed():
    """Every child starts from the template's memory, random generators included: reseed each
    one a script can reach from the system's entropy, so no two executions draw alike. (Python
    reseeds `random` after os.fork itself; doing it again costs nothing.)"""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
