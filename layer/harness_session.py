"""Sessions, for layer/harness.py (loaded from beside it): a session's state is restored into the
code's namespace and working directory before the code runs, and saved from them after it ran,
in the script's own process. The service never unpickles a state: it only carries it, sealed
(encrypted and authenticated), between calls of the same session.

A state holds the module-level names the code defined: values pickled with cloudpickle (so the
functions and classes the session defined travel by value), modules by name (imported again),
and the files the session left in its working directory. A name whose value cannot be pickled
(an open file, a socket, a generator, a thread) is left out and named in the answer's `dropped`,
as is one that could not be restored.

Laid out as `STATE_MAGIC`, the header's length (8 bytes, big-endian), the header (a pickle of
the names, modules and files), then each value's pickle followed by its out-of-band buffers
(pickle protocol 5): an array's data is written from its own memory and restored as a view of
the state as read, never copied in the sandbox on either way.
"""

import importlib
import os
import pickle
import time
import types

STATE_VERSION = 2
# What a state starts with: a state of another layout is refused, never unpickled as this one.
STATE_MAGIC = b"pyexec-session-2"
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
        saved, values = _open_state(self.state)
        for path, content in saved["files"].items():
            _write_file(path, content)
        for name, module in saved["modules"].items():
            try:
                namespace[name] = importlib.import_module(module)
            except Exception:  # noqa: BLE001 - a module gone from the runtime is dropped
                self.not_restored.append(name)
        for name, load in values:
            try:
                namespace[name] = load()
            except Exception:  # noqa: BLE001 - a value that no longer loads is dropped
                self.not_restored.append(name)

    def save(self, namespace, max_bytes):
        """(the state as a list of byte chunks or None, the dropped names, why there is no
        state or None). The chunks are views of the values' own memory where pickle allows
        (numpy arrays, a DataFrame's columns: protocol 5's out-of-band buffers), written out
        as they are: a megabyte of DataFrame is not copied on its way out."""
        import cloudpickle

        entries, chunks, modules, dropped = [], [], {}, list(self.not_restored)
        for name, value in list(namespace.items()):
            if name in OWN_NAMES or (name.startswith("__") and name.endswith("__")):
                continue
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
                continue
            try:
                pickled, raws = _pickled(cloudpickle, value)
            except Exception:  # noqa: BLE001 - whatever cannot be pickled is dropped, named
                dropped.append(name)
                continue
            entries.append((name, len(pickled), [raw.nbytes for raw in raws]))
            chunks.append(pickled)
            chunks.extend(raws)
        files = _session_files(self.before, max_bytes)
        if files is None:
            return None, sorted(dropped), "too_large"
        header = pickle.dumps(
            {"version": STATE_VERSION, "vars": entries, "modules": modules, "files": files},
            protocol=5,
        )
        chunks[:0] = [STATE_MAGIC, len(header).to_bytes(8, "big"), header]
        if sum(memoryview(chunk).nbytes for chunk in chunks) > max_bytes:
            return None, sorted(dropped), "too_large"
        return chunks, sorted(dropped), None


def _pickled(cloudpickle, value):
    """(the pickle of `value`, the raw views of its out-of-band buffers), or the pickle alone
    with every buffer in it where one has no single raw view."""
    buffers = []
    pickled = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    try:
        return pickled, [buffer.raw() for buffer in buffers]
    except BufferError:
        return cloudpickle.dumps(value, protocol=5), []


def _open_state(state):
    """(the saved header, [(name, a function that loads its value)]) of a state: the magic,
    the header's length and the header, then each value's pickle followed by its out-of-band
    buffers, loaded as views of `state` (a bytearray: writable, so a restored array is too)."""
    view = memoryview(state)
    if bytes(view[: len(STATE_MAGIC)]) != STATE_MAGIC:
        return _open_state_v1(state)
    at = len(STATE_MAGIC) + 8
    header_length = int.from_bytes(view[len(STATE_MAGIC) : at], "big")
    saved = pickle.loads(view[at : at + header_length])
    if saved.get("version") != STATE_VERSION:
        raise ValueError("a session state of another version")
    at += header_length
    values = []
    for name, pickled_length, buffer_lengths in saved["vars"]:
        pickled = view[at : at + pickled_length]
        at += pickled_length
        buffers = []
        for length in buffer_lengths:
            buffers.append(view[at : at + length])
            at += length
        values.append((name, lambda p=pickled, b=buffers: pickle.loads(p, buffers=b)))
    return saved, values


def _open_state_v1(state):
    """A state saved before out-of-band buffers (one pickle of every value's own pickle):
    sessions begun before an upgrade go on."""
    saved = pickle.loads(state)
    if not isinstance(saved, dict) or saved.get("version") != 1:
        raise ValueError("a session state of another version")
    values = [(name, lambda b=blob: pickle.loads(b)) for name, blob in saved["vars"].items()]
    return saved, values


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
