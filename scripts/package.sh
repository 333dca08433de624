#!/usr/bin/env bash
# Builds the sdist and the wheel, checks them (twine check --strict, their contents),
# installs the wheel in a fresh virtualenv outside the checkout and runs the demo from it
# (scripts/check_package.py says how). scripts/test.sh runs it as its "package" step.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_system_packages  # resolving the mysql extra reads mysqlclient's metadata
python=$(find_python 3.13 3.12 3.11) || { echo "Python 3.11+ is needed" >&2; exit 1; }
if [ ! -x .venvs/package/bin/python ]; then
    "$python" -m venv .venvs/package
fi
.venvs/package/bin/python -m pip install -q --disable-pip-version-check "build>=1.2" "twine>=6.1" \
    2>&1 | grep -v "^WARNING: Location" || true
exec .venvs/package/bin/python scripts/check_package.py
