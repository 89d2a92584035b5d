"""The frames the script's process reports its outcome in, for layer/harness.py (loaded from
beside it): a result, or an error with its code and details (src/sandbox/protocol.rs reads them).

These run after user code, in its process: everything they use is bound when the harness loads,
before any user code runs, so a script that rebinds or monkeypatches builtins or json cannot
change how its outcome is written (it can at worst corrupt its own frame).
"""

import json
import traceback

from builtins import (  # noqa: A004 - shadowing builtins here is the point
    BaseException,
    MemoryError,
    RecursionError,
    TypeError,
    ValueError,
    len,
    str,
    type,
)

SCRIPT_FILENAME = "<script>"

_dumps = json.dumps
_extract_tb = traceback.extract_tb
_format_list = traceback.format_list
_format_exception_only = traceback.format_exception_only


def result(value, max_result_bytes):
    """The frame of main()'s return value, which must be strict JSON."""
    try:
        encoded = _dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as problem:
        message = f"main() must return a JSON-serializable object: {problem}"
        return failure("NON_JSON_RETURN", message, returned_type=type(value).__name__)
    except MemoryError:
        return failure("MEMORY_LIMIT", "the script ran out of memory serializing its result")
    return sized(encoded, max_result_bytes)


def sized(encoded, max_result_bytes, display=None):
    """The frame of a result already encoded as JSON, unless it is over the cap; `display` is
    a cell's text rendering of a value that is not JSON itself, and counts towards the cap."""
    shown = "" if display is None else ',"display":' + _dumps(display, ensure_ascii=False)
    size = len(encoded.encode("utf-8", "surrogatepass")) + len(shown.encode("utf-8", "replace"))
    if size > max_result_bytes:
        message = f"the result is {size} bytes, over the limit of {max_result_bytes} bytes"
        return failure("RESULT_TOO_LARGE", message, result_bytes=size)
    return '{"status":"ok","result":' + encoded + shown + "}"


def input_file(path, problem):
    """An input file could not be written (the sandbox's disk or file size limit, say)."""
    name = type(problem).__name__
    message = f"the input file {path} could not be written: {name}: {problem}; main() was never called"
    return failure("EXCEPTION", message, exception_type=name, where="files")


def syntax_error(problem):
    line, column = problem.lineno, problem.offset
    message = f"the script does not compile: {problem.msg} (line {line}, column {column})"
    return failure("SYNTAX_ERROR", message, line=line, column=column)


def exception(error, where):
    """An exception the script raised in `where`: "module", "main", "cell" or "session"
    (restoring its state); its traceback
    keeps only the script's own frames."""
    frames = [
        frame
        for frame in _extract_tb(error.__traceback__)
        if frame.filename == SCRIPT_FILENAME
    ]
    lines = ["Traceback (most recent call last):\n"]
    lines += _format_list(frames)
    name = type(error).__name__
    # A script's exception class may define a __str__ that raises; never let that escape.
    detail = _safe_text(lambda: str(error))
    lines += [_safe_text(lambda: "".join(_format_exception_only(type(error), error)))]
    raised = f"{name}: {detail}" if detail else name
    if where == "module":
        message = f"the script's module-level code raised {raised}; main() was never called"
    elif where == "cell":
        message = f"the cell raised {raised}"
    elif where == "session":
        message = f"the session's saved state could not be restored: {raised}; nothing ran"
    else:
        message = f"main() raised {raised}"
    details = {"exception_type": name, "traceback": "".join(lines), "where": where}
    missing = _missing_module(error)
    if missing is not None:
        details["missing_module"] = missing
    return failure("EXCEPTION", message, **details)


def _missing_module(error):
    """The top-level module a ModuleNotFoundError in the exception's chain could not find, when
    the runtime has no such module at all: the script needs a package the service lacks, which
    no fix to its code provides. `import numpy.nope` names a module of a package the runtime
    has, a mistake in the script: None. pandas' "Missing optional dependency" ImportError
    carries the ModuleNotFoundError it caught as its context, so it counts too."""
    seen = set()
    while error is not None and id(error) not in seen and len(seen) < 16:
        seen.add(id(error))
        name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
        if isinstance(name, str) and name:
            top = name.partition(".")[0]
            return None if _importable(top) else top
        error = error.__cause__ or error.__context__
    return None


def _importable(module):
    try:
        import importlib.util

        return importlib.util.find_spec(module) is not None
    except Exception:  # noqa: BLE001 - a broken finder: say nothing rather than guess
        return True


def _safe_text(render):
    try:
        return render()
    except BaseException:  # noqa: BLE001
        return "<unprintable>"


def failure(code, message, **details):
    return _dumps({"status": "error", "code": code, "error": message, **details}, default=str)


def with_session(frame, dropped, problem):
    """A result frame with what its session saved: the names left out (`dropped`), and, when
    no state could be saved at all, why (`too_large`)."""
    session = {"dropped": dropped}
    if problem is not None:
        session["error"] = problem
    return frame[:-1] + ',"session":' + _dumps(session) + "}"
