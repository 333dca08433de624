#!/usr/bin/env bash
# The whole test suite: Django 5.2 (Python 3.11) and Django 6.1 (Python 3.12+), each on
# SQLite, PostgreSQL and MariaDB; the admin in a real browser (Django 6.1, the demo project
# on SQLite, Debian's Chromium); then ruff and mypy. Sets up its virtualenvs in .venvs/.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k retry        # extra arguments go to every pytest run
#   MAILER_TEST_DBS=sqlite bash scripts/test.sh    # only some databases
#   MAILER_TEST_DJANGOS=dj61 bash scripts/test.sh  # only some Django versions
#   MAILER_SKIP_BENCH=1 bash scripts/test.sh       # without bench/run.sh --check
#   MAILER_SKIP_PACKAGE=1 bash scripts/test.sh     # without building and installing the package
#
# With dj61, ruff, mypy, the documentation (Sphinx, warnings as errors) and the admin in
# Chromium are checked too; and always the package (scripts/package.sh: sdist and wheel
# built, twine-checked, the wheel installed outside the checkout and the demo run from it).
#
# Outside CI a database server that does not answer, or a missing Chromium, is skipped,
# and said so; with CI=true it is a failure. Screenshots of the browser tests go to
# $MAILER_SCREENSHOTS (default .ci/artifacts/screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_system_packages
py311=$(find_python 3.11) || { echo "Python 3.11 is needed" >&2; exit 1; }
py312=$(find_python 3.13 3.12) || { echo "Python 3.12 or 3.13 is needed for Django 6.1" >&2; exit 1; }

djangos=${MAILER_TEST_DJANGOS:-"dj52 dj61"}
dbs=${MAILER_TEST_DBS:-"sqlite postgres mariadb"}

for env in $djangos; do
    case $env in
        # django-tasks-db runs the Django Tasks tests (tests/test_tasks.py); Django 5.2 needs
        # the django-tasks backport too (the "tasks" extra), Django 6 has django.tasks.
        # lockfile: django-mailer's own tests import it (scripts/django_mailer_suite.py).
        dj52) make_env .venvs/dj52 "$py311" "Django>=5.2,<5.3" "django-tasks>=0.12" "django-tasks-db>=0.13" \
                  "lockfile>=0.12" ;;
        dj61) make_env .venvs/dj61 "$py312" "Django>=6.1,<6.2" "django-tasks-db>=0.13" \
                  "ruff>=0.6" "mypy>=1.11" "django-stubs>=6.1,<6.2" "playwright>=1.40" \
                  "import-linter>=2.0" ;;
        *) echo "unknown Django environment $env" >&2; exit 2 ;;
    esac
done
# django-mailer 2.3.2 in its own virtualenv, for the upgrade test (tests/test_upgrade.py).
if [ ! -x .venvs/django-mailer/bin/python ]; then
    "$py311" -m venv .venvs/django-mailer
fi
.venvs/django-mailer/bin/python -m pip install -q --disable-pip-version-check \
    "django-mailer==2.3.2" "Django>=5.2,<5.3" "psycopg[binary]" mysqlclient 2>&1 | grep -v "^WARNING: Location" || true
export MAILER_DJANGO_MAILER_PYTHON="$PWD/.venvs/django-mailer/bin/python"

port_for() { case $1 in postgres) echo 5432 ;; mariadb) echo 3306 ;; *) echo "" ;; esac; }
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

failed=()
summary=()
# One stream of cells per Django version, the streams side by side (each cell has its own
# test database, SQLite file, lock directory and ports, so they do not meet): most of a cell's
# time is spent waiting on servers and processes, and CI must stay under 20 minutes.
# MAILER_TEST_SERIAL=1 runs the cells one after another instead.
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
run_cells() {  # run_cells ENV [pytest args...]: every database's cell for one Django version
    local env=$1 db port start status
    shift
    : > "$results/$env"
    for db in $dbs; do
        port=$(port_for "$db")
        if [ -n "$port" ] && ! answers "$port"; then
            if [ "${CI:-}" = "true" ]; then
                echo "FAIL: $db does not answer on 127.0.0.1:$port" >&2
                echo "FAIL $env/$db (server down)" >> "$results/$env"
            else
                echo "SKIP: $db does not answer on 127.0.0.1:$port; its tests are not run" >&2
                echo "OK $env/$db: skipped, server down" >> "$results/$env"
            fi
            continue
        fi
        warnings=()
        if [ "$env" = dj61 ]; then
            warnings=(-W error)  # with MAILERS configured, nothing may warn
        fi
        echo "=== $env / $db ==="
        start=$(date +%s)
        status=0
        MAILER_TEST_DB=$db ".venvs/$env/bin/python" "${warnings[@]}" -m pytest -q -p no:cacheprovider \
            --ignore=tests/browser "$@" || status=$?
        if [ "$status" = 0 ]; then
            echo "OK $env/$db: passed in $(( $(date +%s) - start ))s" >> "$results/$env"
        else
            echo "FAIL $env/$db" >> "$results/$env"
        fi
    done
}
# The checks that are not a cell: each writes its verdict to the stream's results file.
record() {  # record ENV STATUS "summary when passed" "name when failed" ["summary when 5"]
    if [ "$2" = 0 ]; then
        echo "OK $3" >> "$results/$1"
    elif [ "$2" = 5 ] && [ -n "${5:-}" ]; then
        echo "OK $5" >> "$results/$1"
    else
        echo "FAIL $4" >> "$results/$1"
    fi
}

# django-mailer 2.3.2's own tests of its commands, backend and engine, run against mailer
# (SQLite in memory, a few seconds); its deliberate differences are expected failures.
django_mailer_suite() {
    local start status=0
    echo "=== django-mailer's own tests / dj52 ==="
    start=$(date +%s)
    .venvs/dj52/bin/python scripts/django_mailer_suite.py "$@" || status=$?
    record "$stream" "$status" "django-mailer's tests: passed in $(( $(date +%s) - start ))s" \
        "django-mailer's tests" "django-mailer's tests: no test selected"
}

# The browser tests start the demo project themselves (SQLite): one run, not one per database.
browser() {
    local start status=0
    echo "=== browser / dj61 / demo project on SQLite ==="
    if ! ensure_chromium; then
        if [ "${CI:-}" = "true" ]; then
            echo "FAIL: no Chromium at ${MAILER_CHROMIUM:-/usr/bin/chromium}" >&2
            echo "FAIL browser (no chromium)" >> "$results/$stream"
        else
            echo "SKIP: no Chromium at ${MAILER_CHROMIUM:-/usr/bin/chromium} (apt-get install chromium); the browser tests are not run" >&2
            echo "OK browser: skipped, no chromium" >> "$results/$stream"
        fi
        return
    fi
    mkdir -p "$MAILER_SCREENSHOTS"
    rm -f "$MAILER_SCREENSHOTS"/*.png
    start=$(date +%s)
    .venvs/dj61/bin/python -W error -m pytest -q -p no:cacheprovider tests/browser "$@" || status=$?
    record "$stream" "$status" \
        "browser: passed in $(( $(date +%s) - start ))s, screenshots in $MAILER_SCREENSHOTS" \
        browser "browser: no test selected"
}

# The distribution as a user gets it: sdist and wheel built and checked, the wheel installed
# in a fresh virtualenv outside the checkout, the demo run from it (scripts/package.sh).
package() {
    local start status=0
    echo "=== package ==="
    start=$(date +%s)
    bash scripts/package.sh || status=$?
    record "$stream" "$status" "package: built, checked, installed and run in $(( $(date +%s) - start ))s" package
}

# The benchmark's correctness mode: tiny sizes, ours, django-mailer's and post-office's,
# every message delivered exactly once (bench/run.sh; no timing is judged).
bench_check() {
    local start status=0 db port bench_dbs=()
    echo "=== bench/run.sh --check ==="
    for db in $dbs; do
        port=$(port_for "$db")
        if [ -z "$port" ] || answers "$port"; then bench_dbs+=(--db "$db"); fi
    done
    start=$(date +%s)
    bash bench/run.sh --check "${bench_dbs[@]}" || status=$?
    record "$stream" "$status" "bench --check: passed in $(( $(date +%s) - start ))s" "bench --check"
}

lint() {
    local status
    echo "=== ruff, mypy, lint-imports ==="
    status=0
    { .venvs/dj61/bin/ruff check . && .venvs/dj61/bin/ruff format --check .; } || status=$?
    record "$stream" "$status" "ruff: clean" ruff
    status=0
    .venvs/dj61/bin/mypy || status=$?
    record "$stream" "$status" "mypy --strict: clean" mypy
    # The rooms' import directions (pyproject.toml [tool.importlinter]).
    status=0
    .venvs/dj61/bin/lint-imports --no-cache || status=$?
    record "$stream" "$status" "lint-imports: contracts kept" import-linter
}

docs() {
    local status=0
    echo "=== docs ==="
    if [ ! -x .venvs/docs/bin/python ]; then
        "$py312" -m venv .venvs/docs
    fi
    .venvs/docs/bin/python -m pip install -q --disable-pip-version-check -e ".[docs]" "Django>=6.1,<6.2" \
        2>&1 | grep -v "^WARNING: Location" || true
    .venvs/docs/bin/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html || status=$?
    record "$stream" "$status" "docs: built without warnings" docs
}

export MAILER_SCREENSHOTS=${MAILER_SCREENSHOTS:-$PWD/.ci/artifacts/screenshots}
# Each stream runs its cells, then its share of the other checks: Django 5.2's stream
# django-mailer's own tests, the package and the benchmark's check; Django 6.1's the
# browser, the linters and the docs (all of them on the one stream there is, if one).
stream_run() {  # stream_run ENV [pytest args...]
    local stream=$1
    run_cells "$@"
    shift
    if [ "$stream" = dj52 ]; then
        django_mailer_suite "$@"
    fi
    if [ "$stream" = dj52 ] || [[ " $djangos " != *" dj52 "* ]]; then
        [ -n "${MAILER_SKIP_PACKAGE:-}" ] || package
        [ -n "${MAILER_SKIP_BENCH:-}" ] || bench_check
    fi
    if [ "$stream" = dj61 ]; then
        browser "$@"
        lint
        docs
    fi
}

if [ -n "${MAILER_TEST_SERIAL:-}" ]; then
    for env in $djangos; do stream_run "$env" "$@"; done
else
    pids=()
    for env in $djangos; do
        stream_run "$env" "$@" > "$results/$env.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    for env in $djangos; do cat "$results/$env.log"; done
fi
for env in $djangos; do
    while read -r verdict line; do
        if [ "$verdict" = OK ]; then
            summary+=("$line")
        else
            failed+=("$line")
            summary+=("$line: FAILED")
        fi
    done < "$results/$env"
done

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all passed"
