#!/usr/bin/env python3
"""Reads what tools/images/build-root.sh needs out of one of the project's Dockerfiles.

    tools/images/dockerfile.py Dockerfile.lambda      -> JSON on stdout

The image tests build each image's runtime filesystem without Docker, so everything that decides
what is in it comes from the Dockerfile itself: when a Dockerfile drifts, the tests build and run
what it now says. Only the instructions those builds need are understood (FROM, RUN with an
`apt-get install`, `layer/build.sh` and `install -m ... target/release/...`, COPY --from, ENV,
ENTRYPOINT); an instruction of the final stage that is not understood is an error, never skipped,
so a new step cannot silently go missing from the tested image.
"""

import json
import re
import shlex
import sys

# Instructions of the final stage that change no file the tests need to reproduce.
INERT = {"EXPOSE", "LABEL", "USER", "WORKDIR", "HEALTHCHECK", "STOPSIGNAL", "ARG"}


def instructions(text):
    """(KEYWORD, argument) pairs, comments dropped and continuation lines joined."""
    joined, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    if pending:
        joined.append(pending)
    pairs = []
    for line in joined:
        keyword, _, argument = line.partition(" ")
        pairs.append((keyword.upper(), argument.strip()))
    return pairs


def stages(pairs):
    """[{"from", "name", "steps"}] in order."""
    found = []
    for keyword, argument in pairs:
        if keyword == "FROM":
            words = argument.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append({"from": words[0], "name": name, "steps": []})
        elif not found:
            raise SystemExit(f"{keyword} before the first FROM")
        else:
            found[-1]["steps"].append((keyword, argument))
    return found


def apt_packages(command):
    """The packages of every `apt-get install` in a shell command."""
    packages = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part)
        if words[:2] == ["apt-get", "install"]:
            packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


def env_pairs(argument):
    """ENV K=V K2=V2 (and the legacy ENV K V)."""
    words = shlex.split(argument)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def builder(stage):
    """What the builder stage makes: its apt packages, the layer's directory, the binary's path."""
    found = {"image": stage["from"], "apt": [], "layer_dir": None, "binary": None}
    for keyword, argument in stage["steps"]:
        if keyword != "RUN":
            continue
        found["apt"] += apt_packages(argument)
        # `VAR=value layer/build.sh DIR`: settings for the build may precede it.
        layer = re.search(r"(?:^|&&\s*)(?:\w+=\S*\s+)*layer/build\.sh\s+(\S+)", argument)
        if layer:
            found["layer_dir"] = layer.group(1)
        binary = re.search(r"install\s+-m\s+\d+\s+target/release/python-executor\s+(\S+)", argument)
        if binary:
            found["binary"] = binary.group(1)
    return found


def final(stage):
    """The runtime stage: base image, apt packages, copies from the builder, ENV, ENTRYPOINT."""
    found = {"image": stage["from"], "apt": [], "copies": [], "env": {}, "entrypoint": None}
    for keyword, argument in stage["steps"]:
        if keyword == "RUN":
            packages = apt_packages(argument)
            if not packages:
                raise SystemExit(f"final stage: a RUN without apt-get install: {argument}")
            found["apt"] += packages
        elif keyword == "COPY":
            words = argument.split()
            if len(words) != 3 or not words[0].startswith("--from="):
                raise SystemExit(f"final stage: only COPY --from=<stage> SRC DEST: {argument}")
            found["copies"].append({"from": words[0][7:], "src": words[1], "dest": words[2]})
        elif keyword == "ENV":
            found["env"].update(env_pairs(argument))
        elif keyword == "ENTRYPOINT":
            found["entrypoint"] = json.loads(argument)
        elif keyword not in INERT:
            raise SystemExit(f"final stage: {keyword} is not understood by {sys.argv[0]}")
    return found


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: dockerfile.py DOCKERFILE")
    with open(sys.argv[1], encoding="utf-8") as f:
        all_stages = stages(instructions(f.read()))
    named = {stage["name"]: stage for stage in all_stages if stage["name"]}
    runtime = final(all_stages[-1])
    sources = {copy["from"] for copy in runtime["copies"]}
    if len(sources) != 1 or next(iter(sources)) not in named:
        raise SystemExit(f"final stage copies from {sources}; expected one builder stage")
    built = builder(named[next(iter(sources))])
    if not runtime["entrypoint"]:
        raise SystemExit("final stage has no ENTRYPOINT")
    json.dump({"builder": built, "final": runtime}, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
