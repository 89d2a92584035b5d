#!/usr/bin/env bash
# Installs the pinned lint and test tools into .tools/ (never into the system):
#
#   .tools/venv/           venv over /usr/bin/python3 with cfn-lint, hadolint, moto[server],
#                          schemathesis, mcp (the official MCP SDK, for its client),
#                          prometheus-client (its text-format parser reads /metrics in tests)
#                          and uv (the resolver behind `make lock`, tools/lock.py)
#   .tools/bin/aws-lambda-rie
#                          the Lambda Runtime Interface Emulator, taken out of the SAM CLI wheel
#   .tools/stamps/         one stamp per requirements file, named after its sha256
#
# Every requirements file is hash-pinned and installed with --require-hashes, so a tampered or
# re-uploaded artefact fails the install instead of running. The script is idempotent: a step whose
# requirements file has not changed since its stamp was written is skipped, so calling it at the
# start of every CI run costs well under a second once the tools are there.
#
# Environment: TOOLS_DIR (default <repo>/.tools), PYTHON (default /usr/bin/python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
PYTHON=${PYTHON:-/usr/bin/python3}
VENV=$TOOLS_DIR/venv
STAMPS=$TOOLS_DIR/stamps
REQ=$ROOT/tools

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf 'tools/install.sh: %s\n' "$*" >&2; }

# stamp_path FILE -> the stamp that records FILE's current content as done.
stamp_path() {
    local name sum
    name=$(basename "$1" .txt)
    sum=$(sha256sum "$1" | cut -c1-16)
    printf '%s/%s.%s' "$STAMPS" "$name" "$sum"
}

# mark_done FILE: drop older stamps of FILE and record the current one.
mark_done() {
    local name
    name=$(basename "$1" .txt)
    rm -f "$STAMPS/$name".*
    touch "$(stamp_path "$1")"
}

ensure_venv() {
    if [[ -x $VENV/bin/python && -x $VENV/bin/pip ]]; then
        return
    fi
    log "creating $VENV with $PYTHON"
    rm -rf "$VENV" "$STAMPS"
    mkdir -p "$TOOLS_DIR"
    "$PYTHON" -m venv "$VENV"
}

# install_reqs FILE: pip install FILE into the venv unless its stamp is there.
install_reqs() {
    local file=$1
    if [[ -e $(stamp_path "$file") ]]; then
        log "$(basename "$file") up to date"
        return
    fi
    log "installing $(basename "$file")"
    "$VENV/bin/pip" install --quiet --require-hashes -r "$file"
    mark_done "$file"
}

# install_rie: fetch the SAM CLI wheel without its dependencies and take the RIE binary out of it.
install_rie() {
    local file=$REQ/requirements-rie.txt dest=$TOOLS_DIR/bin/aws-lambda-rie dl
    if [[ -x $dest && -e $(stamp_path "$file") ]]; then
        log "aws-lambda-rie up to date"
        return
    fi
    log "extracting aws-lambda-rie from the aws-sam-cli wheel"
    dl=$(mktemp -d)
    # shellcheck disable=SC2064 # expand $dl now: it is local to this function.
    trap "rm -rf '$dl'" RETURN
    "$VENV/bin/pip" download --quiet --no-deps --require-hashes -r "$file" -d "$dl"
    mkdir -p "$TOOLS_DIR/bin"
    "$VENV/bin/python" - "$dl" "$dest.tmp" <<'PY'
import glob, shutil, sys, zipfile

wheel_dir, dest = sys.argv[1], sys.argv[2]
wheels = glob.glob(f"{wheel_dir}/aws_sam_cli-*.whl")
if len(wheels) != 1:
    sys.exit(f"expected one aws_sam_cli wheel in {wheel_dir}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as zf, zf.open("samcli/local/rapid/aws-lambda-rie-x86_64") as src:
    with open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
PY
    chmod +x "$dest.tmp"
    mv "$dest.tmp" "$dest"
    mark_done "$file"
}

main() {
    mkdir -p "$TOOLS_DIR"
    ensure_venv
    mkdir -p "$STAMPS"
    install_reqs "$REQ/requirements-lint.txt"
    install_reqs "$REQ/requirements-moto.txt"
    install_reqs "$REQ/requirements-fuzz.txt"
    install_reqs "$REQ/requirements-mcp.txt"
    install_reqs "$REQ/requirements-metrics.txt"
    install_reqs "$REQ/requirements-lock.txt"
    install_rie
    log "done: $VENV/bin (cfn-lint, hadolint, moto_server, schemathesis, mcp, prometheus_client, uv), $TOOLS_DIR/bin/aws-lambda-rie"
}

main "$@"
