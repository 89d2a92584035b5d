#!/usr/bin/env python3
"""The layer's lock: resolves the list people edit into the hash-pinned lock every build
installs, and says whether the lock is stale.

    tools/lock.py lock  [LIST [LOCK]]   resolve LIST into LOCK with the pinned uv (make lock)
    tools/lock.py check [LIST [LOCK]]   fail when LOCK was not made from LIST as it is now

LIST and LOCK default to layer/requirements.in and layer/requirements.txt. uv comes from the
tools venv (tools/install.sh installs it from tools/requirements-lock.txt), or from $UV.

The lock's first line records a digest of the list's requirements (their names and bounds, not
its comments), so a new comment needs no new lock and a new bound or package does. uv prefers
the versions the existing lock pins, so adding a package to the list moves no other pin unless
it must; UPGRADE=1 lets every pin move to the newest release within its bounds.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIST = ROOT / "layer" / "requirements.in"
DEFAULT_LOCK = ROOT / "layer" / "requirements.txt"
DIGEST_PREFIX = "# list sha256: "
# The runtime the lock is for: the layer's venv runs Debian 12's Python 3.11 (glibc 2.36) on
# x86_64, in both images and on the hosts that build the layer; wheels only, never a build.
RESOLVE = [
    "pip", "compile", "--quiet", "--generate-hashes", "--only-binary", ":all:",
    "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_36",
    "--custom-compile-command", "make lock",
]
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name):
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(list_path):
    """The list's requirement lines, without comments or blanks, each with its spaces removed."""
    lines = []
    for line in Path(list_path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append("".join(line.split()))
    return lines


def digest(list_path):
    """What the lock records of the list: its requirements, in any order."""
    text = "\n".join(sorted(requirements(list_path)))
    return hashlib.sha256(text.encode()).hexdigest()


def pins(lock_path):
    """The distributions the lock pins: canonical name -> version."""
    found = {}
    for line in Path(lock_path).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def check(list_path, lock_path):
    """The reasons the lock is stale against the list; none when it is current."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return [f"{lock_path} is missing"]
    first = lock_path.read_text().split("\n", 1)[0]
    problems = []
    if first != DIGEST_PREFIX + digest(list_path):
        problems.append(f"{lock_path} was not made from {list_path} as it is now")
    pinned = pins(lock_path)
    for requirement in requirements(list_path):
        name = NAME.match(requirement)
        if name is None:
            problems.append(f"{list_path}: cannot read {requirement!r}")
        elif canonical(name.group(1)) not in pinned:
            problems.append(f"{lock_path} pins no {name.group(1)}")
    return problems


def uv():
    found = os.environ.get("UV") or str(ROOT / ".tools" / "venv" / "bin" / "uv")
    if not os.access(found, os.X_OK):
        sys.exit(f"lock: no uv at {found}: run tools/install.sh (make tools), or set UV")
    return found


def lock(list_path, lock_path):
    """Resolves the list into the lock, keeping the lock's current pins where they still fit."""
    lock_path = Path(lock_path)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "requirements.txt"
        if lock_path.exists():
            # uv reads the output file it is given as the versions to prefer.
            shutil.copyfile(lock_path, out)
        command = [uv(), *RESOLVE, str(list_path), "--output-file", str(out)]
        if os.environ.get("UPGRADE") == "1":
            command.append("--upgrade")
        subprocess.run(command, check=True)
        body = out.read_text()
    body = "".join(line for line in body.splitlines(True) if not line.startswith(DIGEST_PREFIX))
    partial = lock_path.with_name(lock_path.name + ".partial")
    partial.write_text(DIGEST_PREFIX + digest(list_path) + "\n" + body)
    partial.replace(lock_path)
    print(f"lock: {lock_path} pins {len(pins(lock_path))} distributions")


def main(argv):
    if len(argv) < 2 or argv[1] not in ("lock", "check") or len(argv) > 4:
        sys.exit(__doc__)
    list_path = Path(argv[2]) if len(argv) > 2 else DEFAULT_LIST
    lock_path = Path(argv[3]) if len(argv) > 3 else DEFAULT_LOCK
    if argv[1] == "lock":
        lock(list_path, lock_path)
        return
    problems = check(list_path, lock_path)
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        sys.exit("lock: stale; run `make lock` and commit both files (docs/packages.md)")
    print(f"lock: {lock_path} is current with {list_path}")


if __name__ == "__main__":
    main(sys.argv)
