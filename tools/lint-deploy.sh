#!/usr/bin/env bash
# Lints the deployment files with the pinned tools from tools/install.sh:
#   cfn-lint on template.yaml, hadolint (settings in .hadolint.yaml) on both Dockerfiles.
# Exits non-zero on any finding, warnings and informational ones included.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
BIN=$TOOLS_DIR/venv/bin
cd "$ROOT"

for tool in cfn-lint hadolint; do
    if [[ ! -x $BIN/$tool ]]; then
        echo "tools/lint-deploy.sh: $BIN/$tool is missing; run tools/install.sh first" >&2
        exit 2
    fi
done

status=0
echo "cfn-lint template.yaml"
# cfn-lint exits non-zero for errors (2), warnings (4) and informational findings (8).
"$BIN/cfn-lint" template.yaml || status=1
echo "hadolint Dockerfile.lambda Dockerfile.cloudrun"
"$BIN/hadolint" --config .hadolint.yaml --failure-threshold info \
    Dockerfile.lambda Dockerfile.cloudrun || status=1

if [[ $status -eq 0 ]]; then
    echo "lint-deploy: no findings"
else
    echo "lint-deploy: findings above" >&2
fi
exit "$status"
