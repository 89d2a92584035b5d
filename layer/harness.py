"""Runs one untrusted script's main() (or a notebook cell) in the sandbox; reports privately.

Protocol with the service (src/execute/job.rs and src/execute/answer/report.rs the other half):

- stdin: one line of JSON, {"script", "args", "files", "mode", "figures", "session"}, then, in a
  session, the state it restores as raw bytes (`session.state_bytes` of them), then EOF. The
  script's process, split off ahead of the job, reads it, restores a session's state
  (harness_session.py), writes the input files, runs the code (harness_cell.py for cells), saves
  open figures under outputs/ when `figures` says so, and lists the files under outputs/
  (harness_files.py; bounded by `--max-output-files N` and `--max-output-bytes N`).
  `--max-result-bytes N` caps the result.
- fd 3 (RESULT_FD), the result channel, is held by the execution's supervisor only: a small
  program of its own (layer/isolate/src/supervisor, `pyexec-supervise`), which this process
  execs as it splits off the script's process (the child, which closes fd 3 before any user
  code). It carries a header line (how the script's process ended, its CPU time, the lengths of
  what follows), then the sections that process wrote: its frame, its output files, a
  session's new state (`--max-state-bytes N`).
- stdout and stderr are the script's own; the harness never writes to them.

The supervisor never executes user code and shares no memory with the script, so nothing a
script does can forge the header; a script can at worst corrupt its own sections, which the
service checks. `--preload a,b` imports modules before the job arrives. With `--template` this
process becomes a template (harness_template.py): it never supervises a script itself; each
child it forks isolates itself and goes on here.
"""

import ast
import builtins
import errno
import fcntl
import gc
import importlib.util
import json
import linecache
import os
import resource
import signal
import sys
import time

RESULT_FD = 3
# Reported when a script sabotaged the very machinery that serializes its result.
BROKEN_FRAME = (
    '{"status":"error","code":"EXCEPTION","error":"the script broke the interpreter state '
    'the harness needs to report its result"}'
)
# The frame wraps the serialized result in a few dozen bytes of JSON; allow for that.
FRAME_OVERHEAD = 4096
# How long the harness waits for room under the process limit to split off the script's process.
FORK_RETRY_S = 10
# What one file's entry in the output files section adds to its content: its path (at most 16
# components of 255 bytes) and the JSON around it (src/sandbox/streams.rs counts the same).
FILE_ENTRY_OVERHEAD = 5 * 1024
# A pipe's capacity until grown (see _fit_pipe).
PIPE_DEFAULT_BYTES = 65536

# Bound before any user code runs: the child keeps using these even if a script rebinds or
# monkeypatches the modules (builtins included) they come from.
from builtins import (  # noqa: E402,A004 - shadowing builtins here is the point
    BaseException,
    Exception,
    MemoryError,
    OSError,
    RecursionError,
    SystemExit,
    TypeError,
    ValueError,
    callable,
    int,
    isinstance,
    len,
    memoryview,
    open,
    str,
    type,
)

_dumps = json.dumps


def _load_sibling(name):
    """A module beside this file: `python -I` keeps this file's directory off sys.path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_harness_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness_cell = _load_sibling("harness_cell")
harness_frames = _load_sibling("harness_frames")
SCRIPT_FILENAME = harness_frames.SCRIPT_FILENAME
harness_files = _load_sibling("harness_files")
harness_isolation = _load_sibling("harness_isolation")
harness_matplotlib = _load_sibling("harness_matplotlib")
harness_session = _load_sibling("harness_session")
harness_template = _load_sibling("harness_template")
harness_warm_up = _load_sibling("harness_warm_up")
_write = os.write
_exit = os._exit
_getpid = os.getpid
_close = os.close


def main():
    # The interpreter is exec-only (layer/build.sh), so the kernel made this process undumpable
    # at exec: from its first instruction, no same-uid process can open its /proc files, fds
    # included. Saying so again costs nothing where the interpreter is readable (a root service
    # running the layer unsealed).
    harness_isolation.set_dumpable(False)
    # Only stdin, stdout, stderr and the result channel (a template's control socket) belong
    # here; anything else inherited (fd 4 is the isolation tool's log, unused here) must not
    # reach the script. Every number, not just those below RLIMIT_NOFILE: an fd inherited
    # above the limit (a parent's jobserver pipe, say) stays open otherwise.
    os.closerange(RESULT_FD + 1, 1 << 30)
    options = _Options(sys.argv[1:])
    if options.isolate:
        harness_isolation.apply(options.isolate)
    harness_matplotlib.reads_shipped_config()
    _no_host_mime_types()
    for module in options.preload:
        __import__(module)
    # As PID 1 of the sandbox's PID namespace, this process only receives signals it handles;
    # ignoring these also keeps compat mode's supervisor alive on a stray SIGINT or SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    forked = options.template
    if forked:
        # Before the freeze: what the preloaded modules build on first use is built once.
        limit = options.max_result_bytes
        harness_warm_up.warm(lambda result: harness_frames.result(result, limit))
        harness_session.prepare_in_template()
    # Objects alive now (the harness, preloaded modules) are never collected: the script's
    # process then never touches their pages, and the fork stays copy-on-write cheap.
    gc.freeze()
    if forked:
        # Never returns in the template; returns in each child it forks, isolated, with that
        # execution's options.
        library, waiter = harness_isolation.library(), harness_isolation.SUPERVISOR
        options = _Options(harness_template.serve(RESULT_FD, library, waiter))
    supervise(options, warm_up=forked)


def _no_host_mime_types():
    """mimetypes reads the host's /etc/mime.types where it finds one: absent under nsjail,
    there but unreadable under compat's Landlock (openpyxl's first guess, in a script's
    to_excel, then raised PermissionError), readable on Lambda. Every sandbox answers alike
    from Python's own table."""
    import mimetypes

    mimetypes.knownfiles[:] = []


def supervise(options, warm_up=False):
    """Splits this process into the execution's supervisor and the script's process, and goes
    on as the latter. With `warm_up`, the script's process warms itself up while it waits for
    its job (harness_warm_up.py)."""
    # The script's process exists before its job: it waits for the job on stdin, so handing a
    # job to a warm sandbox costs no fork. Its sections go out on `sections_write`; before its
    # job it says its pid and its warm-up's CPU time on `hand_write`.
    sections_read, sections_write = os.pipe()
    hand_read, hand_write = os.pipe()
    os.set_inheritable(sections_read, True)
    os.set_inheritable(hand_read, True)
    _split_when_allowed(_supervisor_argv(options, sections_read, hand_read))
    # Only the script's process gets here; the supervisor is a program of its own.
    harness_template.renew_native_id()
    os.close(sections_read)
    os.close(hand_read)
    _run_child(sections_write, hand_write, options, warm_up)


def _supervisor_argv(options, sections_read, hand_read):
    """layer/isolate/src/supervisor: the sections' bounds, each counting what a legitimate
    report of the limits can hold."""
    frame_limit = options.max_result_bytes + FRAME_OVERHEAD
    files_limit = (
        options.max_output_bytes * 4 // 3
        + (options.max_output_files + harness_files.MAX_SKIPPED_LISTED) * FILE_ENTRY_OVERHEAD
    )
    numbers = (sections_read, hand_read, frame_limit, files_limit, options.max_state_bytes)
    return [harness_isolation.SUPERVISOR, "supervise", *(str(number) for number in numbers)]


def _split_when_allowed(argv):
    """Splits (the isolation library's pyexec_split), waiting out a full process limit: a
    spare execution is split while another runs, whose processes may fill a shared uid's
    RLIMIT_NPROC for a moment (a fork bomb, until its teardown kills it). Gives up after
    FORK_RETRY_S. Where the library has no such path, a fork whose parent execs the
    supervisor."""
    blob = b"".join(os.fsencode(arg) + b"\0" for arg in argv)
    library = harness_isolation.library()
    deadline = time.monotonic() + FORK_RETRY_S
    delay = 0.005
    while True:
        result = library.pyexec_split(blob, len(blob))
        if result == 0:
            return
        if result == 1:
            return _fork_and_exec(argv)
        if result != -errno.EAGAIN or time.monotonic() > deadline:
            raise OSError(-result, os.strerror(-result))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _fork_and_exec(argv):
    if os.fork() != 0:
        os.execv(argv[0], argv)


class _Options:
    """`--preload a,b`, `--max-result-bytes N`, `--max-output-files N`, `--max-output-bytes N`,
    `--isolate SPEC` and `--template`, as src/sandbox/ passes them."""

    def __init__(self, argv):
        self.template = "--template" in argv
        argv = [arg for arg in argv if arg != "--template"]
        options = dict(zip(argv[0::2], argv[1::2]))
        self.preload = [name for name in options.get("--preload", "").split(",") if name]
        self.max_result_bytes = int(options.get("--max-result-bytes", 5 * 1024 * 1024))
        self.max_output_files = int(options.get("--max-output-files", 32))
        self.max_output_bytes = int(options.get("--max-output-bytes", 8 * 1024 * 1024))
        self.max_state_bytes = int(options.get("--max-state-bytes", 0))
        self.isolate = options.get("--isolate", "")


def _fit_pipe(fd, size):
    """Grows a pipe to hold `size` bytes (up to 1 MiB) when they are more than its default
    64 KiB: a session's state then crosses in a few writes, not sixteen rounds of waking the
    reader. Only a speed-up: a refusal leaves the pipe as it was."""
    if size > PIPE_DEFAULT_BYTES:
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(1 << (size - 1).bit_length(), 1 << 20))
        except OSError:
            pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[_write(fd, view) :]


# --- the child: everything below runs user code -------------------------------------------------


def _read_job(stream):
    """The job's JSON line, with a session's state (the raw bytes after the line) put in, read
    straight into one buffer of its announced size."""
    job = json.loads(stream.readline())
    session = job.get("session")
    if session:
        state = bytearray(session.get("state_bytes", 0))
        view, got = memoryview(state), 0
        while got < len(state):
            count = stream.readinto(view[got:])
            if not count:
                break
            got += count
        view.release()
        session["state"] = (state if got == len(state) else state[:got]) or None
    return job


def _run_child(sections_fd, hand_fd, options, warm_up):
    os.close(RESULT_FD)
    max_result_bytes = options.max_result_bytes
    encode = lambda result: harness_frames.result(result, max_result_bytes)  # noqa: E731
    warm_up_us = harness_warm_up.warm_before_job(encode) if warm_up else 0
    # Before any user code, and closed at once: nothing a script does can change what it says.
    _write_all(hand_fd, f"{_getpid()} {warm_up_us}".encode())
    _close(hand_fd)
    _cpu_limit_as_sigxcpu()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    job = _read_job(sys.stdin.buffer)
    _to_devnull(0)
    _line_buffered()
    # Files the script creates are its own: where /tmp is shared by other executions' uids
    # (compat as root), nothing it writes there is theirs to read unless it says so.
    os.umask(0o077)
    reporter = _getpid()
    try:
        frame, state = _execute(job, max_result_bytes, options.max_state_bytes)
    except SystemExit as exit_request:
        # sys.exit() in the script: the contract calls that "ended without a result".
        _flush_std_streams()
        _exit(_exit_code(exit_request.code))
    except BaseException:  # noqa: BLE001 - the script broke what reporting needs (json, ...)
        frame, state = BROKEN_FRAME, None
    _flush_std_streams()
    if _getpid() != reporter:
        # A process the script forked came back here, out of main() (returning or raising):
        # only the script's own process reports, or two frames would garble each other.
        _exit(0)
    # Let go of stdout and stderr before reporting: the service has the whole output as soon
    # as the report is in, instead of once this process has finished exiting (unmapping
    # numpy and pandas takes milliseconds). Closed rather than pointed at /dev/null, which
    # would need a free descriptor the script may have used up; nothing writes to them again.
    for fd in (1, 2):
        try:
            _close(fd)
        except OSError:
            pass
    files = _outputs_section(options) if frame else b""
    encoded = frame.encode("utf-8", "surrogatepass")
    chunks = [encoded, b"\n", files, b"\n", *(state or ())]
    _fit_pipe(sections_fd, sum(memoryview(chunk).nbytes for chunk in chunks))
    for chunk in chunks:
        _write_all(sections_fd, chunk)
    # End of file tells the supervisor the sections are whole, without waiting for our exit.
    _close(sections_fd)
    _exit(0)


def _outputs_section(options):
    """The files left under outputs/ (harness_files.py), as one line of JSON; nothing when the
    script broke what listing them needs. Only ever the script's own files: the service checks
    this section against the limits as it checks the frame."""
    try:
        outputs = harness_files.collect_outputs(options.max_output_files, options.max_output_bytes)
        return _dumps(outputs).encode()
    except BaseException:  # noqa: BLE001 - a script may have broken os or json
        return b""


def _to_devnull(*fds):
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def _line_buffered():
    """A pipe makes Python buffer stdout in blocks: a streamed run would see nothing until the
    buffer fills or the script ends. Whole lines go out as they are printed, as on a terminal;
    a script that writes without newlines can still flush itself."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError, OSError):
            pass


def _cpu_limit_as_sigxcpu():
    """The sandbox sets the hard CPU limit one second above the real one; the soft limit at the
    real one makes the kernel send SIGXCPU there, which the service reports as a CPU timeout.
    A fresh fork, this process has used no CPU yet (its warm-up, if any, a few milliseconds,
    well under the limit's one-second steps): the limit counts from hand-over."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY and hard > 1:
        resource.setrlimit(resource.RLIMIT_CPU, (hard - 1, hard))


def _exit_code(code):
    if code is None:
        return 0
    return code if isinstance(code, int) and 0 <= code <= 255 else 1


def _execute(job, max_result_bytes, max_state_bytes):
    """The frame, and a session's state to save (None without a session, or after a failure)."""
    session = harness_session.Session(job["session"]) if job.get("session") else None
    namespace = {"__builtins__": builtins, "__file__": SCRIPT_FILENAME}
    if session is not None:
        _, failure = _call_script("session", session.restore, (namespace,), {})
        if failure is not None:
            return failure, None
    failed = harness_files.write_inputs(job.get("files") or [])
    if failed is not None:
        return harness_frames.input_file(*failed), None
    source, args = harness_cell.dedent(job["script"]), job.get("args") or {}
    try:
        kind, code = _compile(source, job.get("mode") or "script")
    except SyntaxError as error:
        return harness_frames.syntax_error(error), None
    except ValueError as error:  # e.g. "source code string cannot contain null bytes"
        message = f"the script does not compile: {error}"
        return harness_frames.failure("SYNTAX_ERROR", message), None
    linecache.cache[SCRIPT_FILENAME] = (len(source), None, source.splitlines(True), SCRIPT_FILENAME)
    run = _run_cell if kind == "cell" else _run_script
    frame = run(code, args, namespace, max_result_bytes)
    if job.get("figures"):
        harness_matplotlib.save_open_figures(harness_files.OUTPUTS_DIR)
    if session is None or not frame.startswith('{"status":"ok"'):
        return frame, None
    state, dropped, problem = session.save(namespace, max_state_bytes)
    return harness_frames.with_session(frame, dropped, problem), state


def _compile(source, mode):
    """("script", code), or ("cell", (module code, last expression's code or None)) for a cell
    (harness_cell.py: `mode` is "script", "cell" or "auto"). Scripts skip the syntax tree."""
    if mode == "script":
        return "script", compile(source, SCRIPT_FILENAME, "exec", dont_inherit=True)
    tree = compile(source, SCRIPT_FILENAME, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    if harness_cell.is_cell(mode, tree):
        return "cell", harness_cell.split(tree, SCRIPT_FILENAME)
    return "script", compile(tree, SCRIPT_FILENAME, "exec", dont_inherit=True)


def _run_script(code, args, namespace, max_result_bytes):
    namespace["__name__"] = "__script__"
    _, failure = _call_script("module", exec, (code, namespace), {})
    if failure is not None:
        return failure
    entry = namespace.get("main")
    if not callable(entry):
        return harness_frames.failure("NO_MAIN", "Script must contain a 'def main():' function")
    result, failure = _call_script("main", entry, (), args)
    if failure is not None:
        return failure
    return harness_frames.result(result, max_result_bytes)


def _run_cell(code, args, namespace, max_result_bytes):
    """A notebook cell: `args` are its globals, `__name__` is "__main__" as in a notebook, and
    its result is its last expression statement's value (None without one)."""
    module, expression = code
    namespace.update(args)
    namespace["__name__"] = "__main__"
    _, failure = _call_script("cell", exec, (module, namespace), {})
    if failure is not None or expression is None:
        return failure or harness_frames.result(None, max_result_bytes)
    value, failure = _call_script("cell", eval, (expression, namespace), {})
    if failure is not None:
        return failure
    try:
        encoded, display = harness_cell.encode(value, _dumps)
    except MemoryError:
        message = "the script ran out of memory serializing its result"
        return harness_frames.failure("MEMORY_LIMIT", message)
    return harness_frames.sized(encoded, max_result_bytes, display)


def _call_script(where, function, positional, keywords):
    """Runs one stage of the script: its module code ("module"), main() ("main") or a cell
    ("cell"). Returns (value, None), or (None, the error frame) when it raised, so an exception
    says which stage raised it: a failed top-level import never ran main()."""
    try:
        return function(*positional, **keywords), None
    except MemoryError:
        return None, harness_frames.failure("MEMORY_LIMIT", "the script ran out of memory")
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - every script failure is reported
        return None, harness_frames.exception(error, where)


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a script may have replaced or closed the stream
            pass


if __name__ == "__main__":
    main()
