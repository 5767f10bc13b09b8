#!/usr/bin/env bash
# Checks the Terraform module without terraform: a venv with python-hcl2 (pinned; from PyPI),
# then deploy/terraform/test_module.py.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${CARGO_TARGET_DIR:-$repo/target}/hcl-venv"
hcl2_version=8.1.4
if ! "$venv/bin/python" -c "import hcl2, importlib.metadata as m; assert m.version('python-hcl2') == '$hcl2_version'" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "python-hcl2==$hcl2_version"
fi
exec "$venv/bin/python" "$repo/deploy/terraform/test_module.py"
