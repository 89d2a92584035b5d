"""matplotlib in the sandbox, for layer/harness.py (loaded from beside it)."""

import importlib.machinery
import os
import sys


def reads_shipped_config():
    """The layer ships matplotlib's font cache prebuilt, in the read-only directory the sandbox
    names as MPLCONFIGDIR (layer/build.sh). matplotlib takes only a writable directory there:
    given a read-only one, it warns on stderr and builds its cache afresh in a temporary
    directory, which takes seconds. So when matplotlib is first imported (preloaded here, or by
    a script), it is made to take the shipped directory as it is: its matplotlibrc is found
    through MATPLOTLIBRC (which matplotlib reads before it asks for its config directory), and
    once its package has loaded, its config and cache directories are the shipped one. It never
    needs to write there: the cache is complete, and a cache it cannot save is only logged.

    Done even where this process could write there (a template started as root): the execution
    that first imports matplotlib may be a child of it that runs under a uid of its own."""
    directory = os.environ.get("MPLCONFIGDIR", "")
    if not os.path.isdir(directory):
        return
    os.environ.setdefault("MATPLOTLIBRC", directory)
    sys.meta_path.insert(0, _ShippedMatplotlibConfig(directory))


class _ShippedMatplotlibConfig:
    """An import hook that sees to one thing: `matplotlib` itself, once, as above."""

    def __init__(self, directory):
        self.directory = directory

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module
        directory = self.directory

        def shipped_directory():
            return directory

        def exec_module(module):
            load(module)
            module.get_configdir = module.get_cachedir = shipped_directory

        spec.loader.exec_module = exec_module
        return spec
