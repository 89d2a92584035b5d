#!/usr/bin/env python3
"""Import circles between the module files of a Rust crate, for `make lint`.

An edge goes from a module file to every module file its paths name (`crate::`, `super::`,
`self::`, or a child module by name). A module naming its own ancestors is how Rust modules nest
(a submodule using its parent's types) and is not counted; any other cycle is: two siblings, or
two folders, that need each other. Prints each circle and exits 1 when there is one.

Usage: tools/import-circles.py SRC_DIR [SRC_DIR...]
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
CHILD_PATH = re.compile(r"(?<![:\w])([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
NOT_MODULES = {"crate", "super", "self", "std", "core", "alloc"}


def module_files(root):
    """Module path (a tuple) -> file, for every .rs file under root."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                files[tuple(parts)] = path
    return files


def source_without_tests(path):
    text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
    return re.sub(r"//.*", "", text)


def edges_of(module, path, files):
    def resolve(parts):
        for length in range(len(parts), 0, -1):
            if tuple(parts[:length]) in files:
                return tuple(parts[:length])
        return None

    is_folder_module = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
    own = list(module)
    parent = own[:-1]
    found = set()
    text = source_without_tests(path)
    for match in PATH.finditer(text):
        head, tail = match.group(1), match.group(2).split("::")[1:]
        base = {"crate": [], "self": own, "super": parent}[head]
        if head == "self" and not is_folder_module:
            base = own
        target = resolve(base + tail)
        if target and target != module:
            found.add(target)
    for match in CHILD_PATH.finditer(text):
        first = match.group(1)
        if first in NOT_MODULES:
            continue
        target = resolve(own + [first] + match.group(2).split("::")[1:])
        if target and len(target) > len(module):
            found.add(target)
    # A module naming its ancestors is how modules nest: not a circle.
    return {t for t in found if not (len(t) < len(module) and module[: len(t)] == t)}


def strongly_connected(edges):
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(component)

    sys.setrecursionlimit(10_000)
    for node in edges:
        if node not in index:
            visit(node)
    return [component for component in components if len(component) > 1]


def main(roots):
    found = 0
    for root in roots:
        files = module_files(root)
        edges = {module: edges_of(module, path, files) for module, path in files.items()}
        for circle in strongly_connected(edges):
            found += 1
            names = sorted("/".join(module) or "crate" for module in circle)
            print(f"{root}: import circle: {' <-> '.join(names)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
