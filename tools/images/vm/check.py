"""The requests of the cgroup v2 check, run by init.sh inside the VM with the image's python3.

Each finding is one `VMCHECK <name> <json>` line on the serial console; tests/images.rs parses
them and asserts (this script only reports, so a failure shows every finding, not the first).
"""

import json
import os
import time
import urllib.error
import urllib.request

BASE = f"http://127.0.0.1:{os.environ['PORT']}"
SANDBOXES = "/sys/fs/cgroup/container/sandboxes"

HELLO = "def main():\n    print('hi')\n    return {'sum': 1 + 2}\n"
# Touches every page it allocates, far past the 700 MiB per-execution limit and the container's.
# Touches one byte per page: the limit is reached at the page faults' pace, not a memset's too
# (under the VM's software emulation a memset of every byte could spend the 10 s CPU limit
# first).
MEMORY_BOMB = """
def main():
    blocks = []
    while True:
        block = bytearray(64 * 1024 * 1024)
        block[::4096] = b'x' * (len(block) // 4096)
        blocks.append(block)
"""
# Forks until refused; every child stays alive, so only the pids limit can refuse.
FORK_BOMB = """
import errno, os, time
def main():
    children, refusal = 0, None
    for _ in range(500):
        try:
            pid = os.fork()
        except OSError as e:
            refusal = errno.errorcode.get(e.errno, str(e.errno))
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    return {"children": children, "refusal": refusal}
"""


def say(name, value):
    print(f"VMCHECK {name} {json.dumps(value)}", flush=True)


def request(path, body=None, timeout=300):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data,
                                 headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return {"status": status, "body": json.loads(text),
            "seconds": round(time.monotonic() - started, 1)}


def wait_healthy(limit_s=300):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            return request("/health", timeout=30)
        except (OSError, ValueError):
            time.sleep(1)
    return {"status": None, "body": None, "seconds": limit_s}


def cgroups_left():
    """Every cgroup directory and process left below the service's sandboxes/ directory."""
    found = []
    for directory, subdirs, _ in os.walk(SANDBOXES):
        for name in subdirs:
            path = os.path.join(directory, name)
            with open(os.path.join(path, "cgroup.procs")) as f:
                found.append({"cgroup": path, "pids": f.read().split()})
    return found


def main():
    started = time.monotonic()
    say("health", wait_healthy())
    say("start_seconds", round(time.monotonic() - started, 1))
    say("tree", sorted(os.listdir("/sys/fs/cgroup/container")))
    say("hello", request("/execute", {"script": HELLO}))
    say("memory_bomb", request("/execute", {"script": MEMORY_BOMB}))
    say("fork_bomb", request("/execute", {"script": FORK_BOMB}))
    say("after", request("/execute", {"script": HELLO}))
    time.sleep(2)
    say("left", cgroups_left())
    say("done", round(time.monotonic() - started, 1))


if __name__ == "__main__":
    main()
