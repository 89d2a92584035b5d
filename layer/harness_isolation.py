"""How the harness isolates itself before any script exists: the service's system-call policy
installed inside nsjail, and undumpability. Loaded by harness.py (see there); runs only trusted
code, before the job arrives."""

import os


def install_seccomp(programs):
    """Installs the service's system-call policy (src/sandbox/seccomp), the one compat installs
    before exec, before anything else runs here: nsjail has set no_new_privs, and no script has
    reached this process yet. Each program is a comma-separated run of 16 hex digits per BPF
    instruction (code, jt, jf, k). Failing to install it ends the sandbox: it never runs a
    script without its policy."""
    import ctypes

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    libc = ctypes.CDLL(None, use_errno=True)
    for program in programs.split(","):
        chunks = [program[i : i + 16] for i in range(0, len(program), 16)]
        instructions = (SockFilter * len(chunks))(
            *(
                SockFilter(int(c[0:4], 16), int(c[4:6], 16), int(c[6:8], 16), int(c[8:16], 16))
                for c in chunks
            )
        )
        fprog = SockFprog(len(chunks), instructions)
        # PR_SET_SECCOMP (22), SECCOMP_MODE_FILTER (2)
        if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
            os.write(2, b"harness: the sandbox's seccomp policy could not be installed\n")
            os._exit(71)


def set_dumpable(dumpable):
    """Not dumpable: a same-uid script cannot read or write this process through /proc/<pid>
    (mem, environ, fd...) nor trace it. Neither the supervisor nor the script's process ever
    becomes dumpable again: the script's process waits for a future caller's job, and a
    dumpable waiting process would hand its stdin to whoever runs before that caller."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(dumpable), 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass
