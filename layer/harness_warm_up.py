"""Warm-up of a template and of each execution forked from it, with a fixed script of ours.

A forked process shares its template's pages but not its page-table entries for them: the
first touch of each page of interpreter code, module code and shared objects is a page fault
(a copy, when it writes a reference count). A small numpy script meets a few hundred of them,
and on a small VM they were a good part of its time. So an execution's script process, while
it waits for its job, runs the same path a job takes (compile a script, run it, call main(),
encode what main() returned) on a fixed script, and throws the outcome away: the pages are
its own by the time the job comes. The template runs that script once before it freezes its
heap, so whatever the preloaded modules build lazily on first use is built once, shared by
every child, instead of once per execution.

Only our own fixed code runs here, before any job exists: nothing of a caller is involved,
and nothing it leaves (already imported modules, interpreter caches) depends on a caller.
"""

import builtins
import resource
import select
import sys

# Touches the preloaded modules' common paths without importing anything new.
WARM_UP_SCRIPT = """
def main(size=5):
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        data = numpy.arange(size)
        float(numpy.mean(data)), int(numpy.sum(data))
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        pandas.DataFrame({"a": list(range(size))})["a"].sum()
    return {"size": size, "ratio": 2.5, "text": "warm", "none": None, "flag": True}
"""


def warm(encode_result):
    """Runs the fixed script; `encode_result(value)` is how a job's result is encoded. Only a
    speed-up: should a preloaded module fail on it, the process goes on unwarmed."""
    namespace = {"__name__": "__warm_up__", "__builtins__": builtins, "sys": sys}
    try:
        code = compile(WARM_UP_SCRIPT, "<warm-up>", "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - our own fixed script
        encode_result(namespace["main"]())
    except Exception:  # noqa: BLE001, S110 - a warm-up that fails changes nothing else
        pass
    # main() and the namespace refer to each other: a cycle only a collection would free.
    # Cleared, it goes now, and no script can come across it (gc.get_objects()).
    namespace.clear()


def warm_before_job(encode_result):
    """`warm`, unless the job is already on stdin (warming up would only delay it); returns the
    CPU time this process has used so far, in microseconds. Runs before the job is read: the
    figure is the harness's, never the script's (the supervisor subtracts it)."""
    stdin = select.poll()
    stdin.register(0, select.POLLIN)
    if not stdin.poll(0):
        warm(encode_result)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int((usage.ru_utime + usage.ru_stime) * 1e6)
