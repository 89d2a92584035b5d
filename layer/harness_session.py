"""Sessions, for layer/harness.py (loaded from beside it): a session's state is restored into the
code's namespace and working directory before the code runs, and saved from them after it ran,
in the script's own process. The service never unpickles a state: it only carries it, sealed
(encrypted and authenticated), between calls of the same session.

A state holds the module-level names the code defined: values pickled with cloudpickle (so the
functions and classes the session defined travel by value), modules by name (imported again),
and the files the session left in its working directory. A name whose value cannot be pickled
(an open file, a socket, a generator, a thread) is left out and named in the answer's `dropped`,
as is one that could not be restored.
"""

import importlib
import os
import pickle
import time
import types

STATE_VERSION = 1
# Names every namespace has, which are the harness's, never the session's.
OWN_NAMES = frozenset(
    {
        "__name__",
        "__builtins__",
        "__file__",
        "__doc__",
        "__loader__",
        "__spec__",
        "__package__",
        "__cached__",
        "__annotations__",
    }
)
# Where a session's files are not taken from: what the service returns as output files.
OUTPUTS_DIR = "outputs"


def prepare_in_template():
    """Imports, once in a template, what saving a state needs: cloudpickle and what it imports
    (inspect, dataclasses) cost a session's every call 10 to 25 ms otherwise, where the
    template has not imported it already (pandas does)."""
    import cloudpickle  # noqa: F401


class Session:
    """One call's session: what it restored, and the files its working directory held before
    (those were not the session's, unless the call changed them; usually there are none)."""

    def __init__(self, job_session):
        self.state = job_session.get("state")
        # File versions, not times: a file's time comes from a coarser clock than time.time(),
        # so one written a moment after a recorded time may seem older than it.
        self.before = dict(_walk_files())
        self.not_restored = []

    def restore(self, namespace):
        """Puts the saved names into `namespace` and the saved files into the working
        directory. Names that cannot be restored are remembered as dropped."""
        if not self.state:
            return
        state = pickle.loads(self.state)
        if state.get("version") != STATE_VERSION:
            raise ValueError("a session state of another version")
        for path, content in state["files"].items():
            _write_file(path, content)
        for name, module in state["modules"].items():
            try:
                namespace[name] = importlib.import_module(module)
            except Exception:  # noqa: BLE001 - a module gone from the runtime is dropped
                self.not_restored.append(name)
        for name, blob in state["vars"].items():
            try:
                namespace[name] = pickle.loads(blob)
            except Exception:  # noqa: BLE001 - a value that no longer loads is dropped
                self.not_restored.append(name)

    def save(self, namespace, max_bytes):
        """(the state's bytes or None, the dropped names, why there is no state or None)."""
        import cloudpickle

        values, modules, dropped = {}, {}, list(self.not_restored)
        for name, value in list(namespace.items()):
            if name in OWN_NAMES or (name.startswith("__") and name.endswith("__")):
                continue
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
                continue
            try:
                values[name] = cloudpickle.dumps(value)
            except Exception:  # noqa: BLE001 - whatever cannot be pickled is dropped, named
                dropped.append(name)
        files = _session_files(self.before, max_bytes)
        if files is None:
            return None, sorted(dropped), "too_large"
        state = cloudpickle.dumps(
            {"version": STATE_VERSION, "vars": values, "modules": modules, "files": files}
        )
        if len(state) > max_bytes:
            return None, sorted(dropped), "too_large"
        return state, sorted(dropped), None


def _session_files(before, max_bytes):
    """The regular files under the working directory (outputs/ aside) that are not as they were
    `before`, relative path to content; None when they alone are over `max_bytes`."""
    files, total = {}, 0
    for path, version in _walk_files():
        if before.get(path) == version:
            continue
        total += version[1]
        if total > max_bytes:
            return None
        try:
            with open(path, "rb") as file:
                files[path] = file.read()
        except OSError:
            continue
    return files


def _walk_files():
    """(relative path, (inode, size, mtime in ns)) of each regular file under the working
    directory, outputs/ aside, never following links."""
    for root, directories, names in os.walk(".", followlinks=False):
        if root == ".":
            directories[:] = [d for d in directories if d != OUTPUTS_DIR]
        for name in names:
            path = os.path.join(root, name)
            try:
                stat = os.lstat(path)
            except OSError:
                continue
            if _is_regular(stat):
                yield os.path.normpath(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _is_regular(stat):
    return (stat.st_mode & 0o170000) == 0o100000


def _write_file(path, content):
    """Writes a saved file back, relative to the working directory only."""
    normalized = os.path.normpath(path)
    if os.path.isabs(normalized) or normalized.split(os.sep)[0] == "..":
        return
    directory = os.path.dirname(normalized)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(normalized, "wb") as file:
        file.write(content)
