#!/usr/bin/env bash
# The benchmark: this package against django-mailer 2.3.2, one command, one run.
#
#   bash bench/run.sh --quick   # about the sizes of a few minutes (the default)
#   bash bench/run.sh --full    # the sizes of bench/RESULTS.md (long; run on a quiet machine)
#   bash bench/run.sh --check   # tiny sizes, correctness only: every message exactly once
#
# Extra arguments go to bench/bench.py: --db sqlite|postgres|mariadb (repeatable),
# --only SCENARIO (enqueue, drain, baselines, command, cron, latency, wakeup, scale,
# memory, crash; repeatable), --dj61 / --no-dj61. It makes its virtualenvs under bench/.venvs/
# from PyPI, needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and MariaDB on
# 127.0.0.1:3306 (root, no password), and writes bench/out/<timestamp>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source bench/venvs.sh

with_dj61=0
for arg in "$@"; do
    case $arg in --full | --dj61) with_dj61=1 ;; esac
done
for arg in "$@"; do
    case $arg in --no-dj61) with_dj61=0 ;; esac
done
ensure_system_packages
bench_venvs "$with_dj61"
# Ours is installed editable: compile it as pip compiles an installed package (django-mailer's),
# so that no run pays for compiling it (and PYTHONDONTWRITEBYTECODE makes no difference).
for venv in bench/.venvs/ours-dj52 bench/.venvs/ours-dj61; do
    if [ -x "$venv/bin/python" ]; then "$venv/bin/python" -m compileall -q src/mailer >/dev/null; fi
done
# The crash section (bench/crash.py) runs after the others, with the same arguments.
status=0
bench/.venvs/ours-dj52/bin/python bench/bench.py "$@" || status=$?
bench/.venvs/ours-dj52/bin/python bench/crash.py "$@" || status=$?
exit "$status"
