"""matplotlib in the sandbox, for layer/harness.py (loaded from beside it): its shipped
configuration, and the open figures a job may ask to be saved as output files."""

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


# At most this many open figures are saved: each is an image a reader (a model) must take in.
MAX_FIGURES = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


def save_open_figures(outputs):
    """Saves every open pyplot figure as `outputs`/figure-N.png, in the script's process once
    its code has run (for a job that asks: the MCP tool returns images). Nothing when pyplot
    was never imported (importing it here would cost for nothing), nor when the code saved
    images under `outputs` itself: those are the figures it meant to show. Never raises: the
    figures are a courtesy, the code's outcome is already decided."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    try:
        if _has_images(outputs):
            return
        for number in pyplot.get_fignums()[:MAX_FIGURES]:
            path = _free_name(outputs, f"figure-{number}", ".png")
            pyplot.figure(number).savefig(path, format="png")
    except Exception:  # noqa: BLE001, S110 - the code may have broken matplotlib or outputs/
        pass


def _has_images(directory):
    for _, _, names in os.walk(directory):
        if any(name.lower().endswith(IMAGE_SUFFIXES) for name in names):
            return True
    return False


def _free_name(directory, stem, suffix):
    path = os.path.join(directory, stem + suffix)
    copy = 1
    while os.path.lexists(path):
        copy += 1
        path = os.path.join(directory, f"{stem}-{copy}{suffix}")
    return path
