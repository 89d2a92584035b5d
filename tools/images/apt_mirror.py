#!/usr/bin/env python3
"""The Debian mirror this machine's apt already uses, for debootstrap and the image roots' apt.

    tools/images/apt_mirror.py mirror SUITE     -> the archive URI serving SUITE (e.g. bookworm)
    tools/images/apt_mirror.py sources SUITE    -> a deb822 debian.sources for an image root

Read at run time from /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line `.list` and
deb822 `.sources` files alike), so no host name is written into the project: a machine behind a
local mirror or a snapshot builds its roots from that mirror. `sources` writes what debian:12-slim
ships (SUITE, SUITE-updates, SUITE-security), pointed at this machine's mirrors.
"""

import glob
import sys

SOURCES_DIR = "/etc/apt/sources.list.d"


def one_line_entries(path):
    """(uris, suites) of `deb [options] URI SUITE COMPONENT...` lines."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2:
                yield [words[0]], [words[1]]


def deb822_entries(path):
    """(uris, suites) of each enabled `Types: deb` paragraph."""
    with open(path, encoding="utf-8") as f:
        paragraphs = f.read().split("\n\n")
    for paragraph in paragraphs:
        fields = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            yield fields.get("uris", []), fields.get("suites", [])


def entries():
    files = ["/etc/apt/sources.list"] + sorted(glob.glob(f"{SOURCES_DIR}/*.list"))
    for path in files:
        try:
            yield from one_line_entries(path)
        except FileNotFoundError:
            pass
    for path in sorted(glob.glob(f"{SOURCES_DIR}/*.sources")):
        yield from deb822_entries(path)


def mirror(suite):
    for uris, suites in entries():
        if suite in suites and uris:
            return uris[0].rstrip("/")
    raise SystemExit(f"apt_mirror.py: no apt source on this machine serves {suite}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("mirror", "sources"):
        raise SystemExit("usage: apt_mirror.py mirror|sources SUITE")
    suite = sys.argv[2]
    if sys.argv[1] == "mirror":
        print(mirror(suite))
        return
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    for uri, suites in ((mirror(suite), f"{suite} {suite}-updates"),
                        (mirror(f"{suite}-security"), f"{suite}-security")):
        print(f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\nSigned-By: {keyring}\n")


if __name__ == "__main__":
    main()
