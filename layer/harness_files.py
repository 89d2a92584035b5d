"""Files in and out of the sandbox, for layer/harness.py (loaded from beside it).

In: the request's files, written by the script's process into its working directory before any
user code runs. Out: the regular files under `outputs/`, read by the supervisor (which never
runs user code) once the script's process has reported, and sent on the private result channel
after its frame. src/sandbox/protocol.rs reads that section.

The script, or a process it left running, may have replaced anything in the working directory
with a symlink, a FIFO or a device, and may still be writing. So nothing here follows a
symlink (every path is opened one component at a time, relative to its parent, with
O_NOFOLLOW), nothing but a regular file is ever opened (lstat first, then fstat on what was
opened), opens never block (O_NONBLOCK), and every read and listing is capped.
"""

import binascii
import os
import stat

OUTPUTS_DIR = "outputs"
# A script's leftover process may keep creating directories and files while they are listed:
# the walk looks no deeper than this and at no more entries than this, whatever it finds.
MAX_DEPTH = 16
MAX_ENTRIES = 10000
# Entries that are not regular files are named in the report, up to this many.
MAX_SKIPPED_LISTED = 32
# Reported paths of skipped entries are cut to this many characters.
MAX_SKIPPED_PATH = 1024
READ_CHUNK = 1 << 16

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# --- in: run in the script's process, before user code ------------------------------------------


def write_inputs(files):
    """Writes `files` ([{"path", "content" | "content_base64"}], checked by the service:
    relative, no `.` or `..` components) under the working directory, then creates `outputs/`
    so a script can save there at once. Never replaces or follows anything: each directory is
    created or opened relative to its parent with O_NOFOLLOW, each file created with O_EXCL.
    Returns None, or (path, error) for the first file that could not be written."""
    for entry in files:
        path = entry["path"]
        try:
            _write_one(path, _content(entry))
        except (OSError, ValueError) as error:
            return path, error
    try:
        os.mkdir(OUTPUTS_DIR, 0o755)
    except FileExistsError:
        pass  # an input file went there
    except OSError as error:
        return OUTPUTS_DIR, error
    return None


def _content(entry):
    if "content_base64" in entry:
        return binascii.a2b_base64(entry["content_base64"], strict_mode=True)
    return entry["content"].encode("utf-8", "surrogatepass")


def _write_one(path, data):
    *directories, name = path.split("/")
    parent = os.open(".", _DIR_FLAGS)
    try:
        for directory in directories:
            parent = _enter(parent, directory)
        fd = os.open(name, _NEW_FILE_FLAGS, 0o644, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def _enter(parent, name):
    """The directory `name` in `parent`, created if missing; `parent` is closed. A symlink in
    its place fails (ELOOP or ENOTDIR) instead of being followed."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    finally:
        os.close(parent)


# --- out: run in the supervisor, after the script's process reported ----------------------------


class _OverLimit(Exception):
    def __init__(self, report):
        super().__init__()
        self.report = report


def collect_outputs(max_files, max_bytes):
    """The regular files under `outputs/`: {"files": [{"path", "bytes", "content_base64"}],
    "skipped": [{"path", "reason"}]}, or {"error": "TOO_MANY_OUTPUT_FILES" |
    "OUTPUT_FILES_TOO_LARGE", ...} when they are over the limits (then nothing is returned,
    rather than some of them)."""
    walk = _Walk(max_files, max_bytes)
    try:
        kind = stat.S_IFMT(os.lstat(OUTPUTS_DIR).st_mode)
    except OSError:
        return walk.report()
    if kind != stat.S_IFDIR:
        walk.skip(OUTPUTS_DIR, "symlink" if kind == stat.S_IFLNK else "not_a_directory")
        return walk.report()
    try:
        walk.directory(os.open(OUTPUTS_DIR, _DIR_FLAGS), OUTPUTS_DIR, 1)
    except _OverLimit as over:
        return over.report
    except OSError:
        pass  # replaced between lstat and open: what was read so far stands
    return walk.report()


class _Walk:
    def __init__(self, max_files, max_bytes):
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.files = []
        self.skipped = []
        self.skipped_count = 0
        self.total = 0
        self.entries = 0

    def report(self):
        report = {"files": self.files, "skipped": self.skipped}
        if self.skipped_count > len(self.skipped):
            report["skipped_unlisted"] = self.skipped_count - len(self.skipped)
        return report

    def directory(self, fd, path, depth):
        """Looks at every entry of the open directory `fd` (closed here), in name order."""
        try:
            with os.scandir(fd) as listing:
                names = []
                for entry in listing:
                    self.entries += 1
                    if self.entries > MAX_ENTRIES:
                        raise _OverLimit(self.too_many())
                    names.append(entry.name)
            for name in sorted(names):
                self.entry(fd, name, f"{path}/{name}", depth)
        finally:
            os.close(fd)

    def entry(self, parent, name, path, depth):
        try:
            kind = stat.S_IFMT(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            return  # removed meanwhile
        if not _is_utf8(path):
            self.skip(path, "name_not_utf8")
        elif kind == stat.S_IFDIR and depth < MAX_DEPTH:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except OSError:
                return
            self.directory(fd, path, depth + 1)
        elif kind == stat.S_IFDIR:
            self.skip(path, "too_deep")
        elif kind == stat.S_IFREG:
            self.regular(parent, name, path)
        else:
            self.skip(path, _reason(kind))

    def regular(self, parent, name, path):
        if len(self.files) >= self.max_files:
            raise _OverLimit(self.too_many())
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError:
            return  # replaced by a symlink (ELOOP) or removed since the lstat
        try:
            kind = stat.S_IFMT(os.fstat(fd).st_mode)
            if kind != stat.S_IFREG:
                self.skip(path, _reason(kind))
                return
            data = self.read_capped(fd)
        finally:
            os.close(fd)
        self.files.append(
            {
                "path": path,
                "bytes": len(data),
                "content_base64": binascii.b2a_base64(data, newline=False).decode("ascii"),
            }
        )

    def read_capped(self, fd):
        """The file's bytes, never more than the room left plus one: a file still growing is
        read up to where it is now, or found over the limit."""
        room = self.max_bytes - self.total
        chunks, size = [], 0
        while size <= room:
            chunk = os.read(fd, min(READ_CHUNK, room + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        self.total += size
        if self.total > self.max_bytes:
            raise _OverLimit(
                {
                    "error": "OUTPUT_FILES_TOO_LARGE",
                    "limit_bytes": self.max_bytes,
                    "files_read": len(self.files) + 1,
                }
            )
        return b"".join(chunks)

    def too_many(self):
        return {"error": "TOO_MANY_OUTPUT_FILES", "limit_files": self.max_files}

    def skip(self, path, reason):
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            shown = path.encode("utf-8", "replace").decode("utf-8")[:MAX_SKIPPED_PATH]
            self.skipped.append({"path": shown, "reason": reason})


def _reason(kind):
    """Why an entry of this type (stat.S_IFMT) is not returned."""
    return {
        stat.S_IFLNK: "symlink",
        stat.S_IFIFO: "fifo",
        stat.S_IFSOCK: "socket",
        stat.S_IFCHR: "device",
        stat.S_IFBLK: "device",
    }.get(kind, "not_a_regular_file")


def _is_utf8(path):
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
