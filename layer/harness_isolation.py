"""How the harness isolates itself before any script exists, through the isolation library the
service's own code comes from (layer/isolate, `libpyexec_isolate.so`): a process the service
starts and cannot reach between fork and exec (a template, a cold sandbox under nsjail)
applies its spec here, first thing; a template's child runs the library's steps in
harness_template.py. Loaded by harness.py; runs only trusted code, before the job arrives."""

import ctypes
import os

# Exit status of a harness whose isolation failed: it never ran anything.
ISOLATION_FAILED = 71


_loaded = []
# The supervisor's program (layer/isolate/src/supervisor), beside the library.
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyexec-supervise")


def library():
    """The isolation library, beside this file, with its entry points' signatures (loaded
    once)."""
    if _loaded:
        return _loaded[0]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libpyexec_isolate.so")
    loaded = ctypes.CDLL(path)
    signatures = (
        ("pyexec_apply", [ctypes.c_char_p, ctypes.c_size_t]),
        ("pyexec_enter", [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]),
        ("pyexec_continue_in_namespace", [ctypes.c_int, ctypes.c_char_p]),
        ("pyexec_split", [ctypes.c_char_p, ctypes.c_size_t]),
        ("pyexec_confine", [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]),
    )
    for name, arguments in signatures:
        function = getattr(loaded, name)
        function.argtypes = arguments
        function.restype = ctypes.c_int
    _loaded.append(loaded)
    return loaded


def apply(spec_hex):
    """Applies the service's spec (`--isolate`, hex) to this process: its limits, working
    directory, no_new_privs and system-call policy. Failing ends the sandbox: it never runs
    anything without its isolation."""
    spec = bytes.fromhex(spec_hex)
    if library().pyexec_apply(spec, len(spec)) != 0:
        os._exit(ISOLATION_FAILED)


def set_dumpable(dumpable):
    """Not dumpable: a same-uid script cannot read or write this process through /proc/<pid>
    (mem, environ, fd...) nor trace it. Neither the supervisor nor the script's process ever
    becomes dumpable again: the script's process waits for a future caller's job, and a
    dumpable waiting process would hand its stdin to whoever runs before that caller."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, int(dumpable), 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass
