#!/usr/bin/env bash
# Sets up .venvs/demo and runs the demo (demo/run.py) on SQLite.
#   bash scripts/demo.sh          # the tour: queue mail, deliver it, show what arrived
#   bash scripts/demo.sh admin    # the admin, with mail in every state, on 127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
python=$(find_python 3.13 3.12 3.11) || { echo "Python 3.11+ is needed" >&2; exit 1; }
if [ ! -x .venvs/demo/bin/python ]; then
    "$python" -m venv .venvs/demo
fi
.venvs/demo/bin/python -m pip install -q --disable-pip-version-check -e . "aiosmtpd>=1.4.6" \
    2>&1 | grep -v "^WARNING: Location" || true
exec .venvs/demo/bin/python demo/run.py "$@"
