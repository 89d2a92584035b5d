"""The supervisor's side of the script's process: its frame, how it ended, its CPU time.

Runs only in the supervisor, which never executes user code: nothing here is reachable by a
script, and what it reads from the script's process (the frame) is bounded and passed on raw.
"""

import os
import select
import signal
import time

# Longest wait, once the frame is in, for the script's process to finish exiting, where its
# CPU clock cannot be read (see _cpu_ms_after_frame): it costs about a millisecond, a few tens
# with a heap of gigabytes.
EXIT_WAIT_S = 0.1
# The most one read of the frame's pipe takes.
READ_BYTES = 1 << 20
# The kernel's CPU-time clock of a whole process, as clock_getcpuclockid(3) encodes it.
CPUCLOCK_SCHED = 2


def collect(pid, read_end, limit):
    """Reads the child's frame. Done at end of file once a frame is in (the child closes its
    end right after writing, so the answer need not wait for its exit), or else when the child
    exits (it may have written nothing, or a grandchild may hold the pipe open)."""
    chunks, size, oversized = [], 0, False
    exited = _exit_watch(pid)
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    if exited is not None:
        poller.register(exited, select.POLLIN)
    while True:
        # Without a pidfd (kernels before 5.3), check on the child every 10 ms instead.
        events = dict(poller.poll(None if exited is not None else 10))
        if read_end in events:
            # As much as the pipe holds (grown to a megabyte for a session's state): one read,
            # and one chunk that needs no joining.
            chunk = os.read(read_end, READ_BYTES)
            if not chunk:
                poller.unregister(read_end)
                if size and not oversized:
                    return b"".join(chunks), False, (None, _cpu_ms_after_frame(pid, exited))
            elif oversized or size + len(chunk) > limit:
                oversized = True
                os.kill(pid, signal.SIGKILL)
            else:
                chunks.append(chunk)
                size += len(chunk)
        if (exited is not None and exited in events) or (exited is None and _has_exited(pid)):
            break
    _, status, usage = os.wait4(pid, 0)
    if not oversized:
        chunks.extend(_drain(read_end, limit - size))
        oversized = sum(len(chunk) for chunk in chunks) > limit
    return (b"" if oversized else b"".join(chunks)), oversized, (status, _rusage_ms(usage))


def _exit_watch(pid):
    """A pidfd that becomes readable when the child exits, so waiting costs no polling."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid):
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _drain(read_end, room):
    """What the exited child left in the pipe, without waiting on grandchildren holding it."""
    os.set_blocking(read_end, False)
    chunks = []
    try:
        while room >= 0:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            room -= len(chunk)
    except BlockingIOError:
        pass
    return chunks


def _cpu_ms_after_frame(pid, exited):
    """The script's process closes its frame and exits at once; its exit takes about a
    millisecond, several with numpy and pandas mapped, all of it on the answer's path if waited
    for. So its CPU time is read from its CPU clock while it exits, with the clock ticks of the
    children it waited for. Only where that clock cannot be read is the exit waited for (at most
    EXIT_WAIT_S, then the kernel's coarser figure). How it exits no longer matters: its frame is
    in."""
    live = _live_cpu_ms(pid)
    if live is not None:
        return live
    if _exited_within(pid, exited, EXIT_WAIT_S):
        return _rusage_ms(os.wait4(pid, 0)[2])
    return _proc_cpu_ms(pid)


def _live_cpu_ms(pid):
    """CPU time of a process not yet reaped: its own threads' to the nanosecond (its process
    CPU clock), plus the children it waited for, in clock ticks."""
    clock = (~pid << 3) | CPUCLOCK_SCHED
    try:
        own_ns = time.clock_gettime_ns(clock)
    except OSError:
        return None
    children = _proc_cpu_ticks(pid, fields=slice(13, 15))
    ticks_ms = (children or 0) * 1000 // os.sysconf("SC_CLK_TCK")
    return own_ns // 1_000_000 + ticks_ms


def _exited_within(pid, exited, seconds):
    if exited is not None:
        poller = select.poll()
        poller.register(exited, select.POLLIN)
        return bool(poller.poll(seconds * 1000))
    deadline = time.monotonic() + seconds
    while not _has_exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def _rusage_ms(usage):
    """CPU time of a process, its threads and the children it waited for."""
    return int((usage.ru_utime + usage.ru_stime) * 1000)


def _proc_cpu_ms(pid):
    """The same figure for a process not yet reaped, in clock ticks (10 ms here)."""
    ticks = _proc_cpu_ticks(pid, fields=slice(11, 15))
    return None if ticks is None else ticks * 1000 // os.sysconf("SC_CLK_TCK")


def _proc_cpu_ticks(pid, fields):
    """The sum of some of fields 14 to 17 of /proc/PID/stat (utime stime cutime cstime), in
    clock ticks; `fields` counts from the first field after the command name (which may
    itself hold spaces and parentheses), so utime is 11."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            after_name = stat.read().rsplit(b")", 1)[1].split()
        return sum(int(field) for field in after_name[fields])
    except (OSError, IndexError, ValueError):
        return None


def describe_status(ended):
    status, cpu_ms = ended
    if status is None:  # reported before exiting; how it then exits no longer matters
        return {"exit_code": None, "signal": None, "cpu_ms": cpu_ms}
    # The script's own CPU time tells a CPU-limit SIGKILL from any other.
    if os.WIFSIGNALED(status):
        return {"exit_code": None, "signal": os.WTERMSIG(status), "cpu_ms": cpu_ms}
    return {"exit_code": os.waitstatus_to_exitcode(status), "signal": None, "cpu_ms": cpu_ms}
