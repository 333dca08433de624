#!/usr/bin/env bash
# The benchmark: this package against django-mailer 2.3.2 and django-post-office 3.12, on
# Django 5.2 and 6.1, one command, one run.
#
#   bash bench/run.sh --quick   # the default: under an hour
#   bash bench/run.sh --full    # the sizes of bench/RESULTS.md (long; run on a quiet machine)
#   bash bench/run.sh --check   # tiny sizes, Django 5.2, correctness only: every message
#                               # of every package exactly once
#
# Extra arguments go to bench/bench.py: --db sqlite|postgres|mariadb (repeatable),
# --only SCENARIO (enqueue, drain, baselines, command, parallel, cron, latency, relay,
# wakeup, scale, memory, crash; repeatable), --server pipelining|no-pipelining (the SMTP sink
# offers PIPELINING or not; default both), --dj61 / --no-dj61. It makes its virtualenvs
# under bench/.venvs/ from PyPI, needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust)
# and MariaDB on 127.0.0.1:3306 (root, no password), and writes bench/out/<timestamp>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source bench/venvs.sh

with_dj61=1
for arg in "$@"; do
    case $arg in --check) with_dj61=0 ;; esac
done
for arg in "$@"; do
    case $arg in --dj61) with_dj61=1 ;; --no-dj61) with_dj61=0 ;; esac
done
ensure_system_packages
bench_venvs "$with_dj61"
# Ours is installed editable: compile it as pip compiles an installed package (django-mailer's),
# so that no run pays for compiling it (and PYTHONDONTWRITEBYTECODE makes no difference).
for venv in bench/.venvs/ours-dj52 bench/.venvs/ours-dj61 bench/.venvs/ours-dj52py*/; do
    if [ -x "$venv/bin/python" ]; then "$venv/bin/python" -m compileall -q src/mailer >/dev/null; fi
done
# The crash section (bench/crash.py) runs after the others, with the same arguments.
status=0
bench/.venvs/ours-dj52/bin/python bench/bench.py "$@" || status=$?
bench/.venvs/ours-dj52/bin/python bench/crash.py "$@" || status=$?
exit "$status"
