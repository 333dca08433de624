# Sourced by bench/run.sh: the benchmark's own virtualenvs, made from PyPI under bench/.venvs/.
#   ours-dj52  Python 3.11, Django 5.2, this package (editable: measures the work tree)
#   dm-dj52    Python 3.11, Django 5.2, django-mailer 2.3.2
#   po-dj52    Python 3.11, Django 5.2, django-post-office 3.12.0
#   ours-dj61, dm-dj61, po-dj61: the same on Python 3.12+ and Django 6.1 (not with --no-dj61)
#   ours-dj52py313 (named after that Python): ours on Django 5.2 and the Django 6.1 sides'
#              Python, for Django 6.1 / 5.2 on one interpreter (the drain scenario only)
# Each also gets the PostgreSQL and MariaDB drivers. A stamp file (the Python and pip's
# arguments) skips pip when nothing changed.

DM_SPEC="django-mailer==2.3.2"
PO_SPEC="django-post-office==3.12.0"
DB_DRIVERS=("psycopg[binary]>=3.1" "mysqlclient>=2.2.1")

# bench_venv NAME PYTHON MODULE PIP-ARGS...: MODULE is what must be installed afterwards
# (found, not imported: post_office reads Django's settings as it is imported).
bench_venv() {
    local name=$1 python=$2 module=$3
    shift 3
    local dir=bench/.venvs/$name stamp="bench/.venvs/$name.stamp" want
    # The interpreter too: another Python (or another patch release of it) makes a new venv.
    want="$("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])') $*"
    if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "bench: setting up $dir ($want)" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" \
        2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$dir/bin/python" -c "import django, importlib.util as u; assert u.find_spec('$module')" ||
        { echo "bench: $dir is broken" >&2; return 1; }
    echo "$want" >"$stamp"
}

# bench_venvs_for TAG PYTHON "DJANGO-SPEC": the three packages on one Django version. The
# others' failing to install (on a Django they refuse) leaves them out of the run, said in
# its table (bench/bench.py); ours' failing stops it.
bench_venvs_for() {
    local tag=$1 python=$2 django=$3
    bench_venv "ours-$tag" "$python" mailer -e ".[postgres,mysql]" "$django"
    bench_venv "dm-$tag" "$python" mailer "$DM_SPEC" "$django" "${DB_DRIVERS[@]}" ||
        echo "bench: django-mailer left out on $django" >&2
    bench_venv "po-$tag" "$python" post_office "$PO_SPEC" "$django" "${DB_DRIVERS[@]}" ||
        echo "bench: django-post-office left out on $django" >&2
}

bench_venvs() {
    local with_dj61=$1 py311 py312
    py311=$(find_python 3.11) || { echo "bench: Python 3.11 is needed" >&2; return 1; }
    bench_venvs_for dj52 "$py311" "Django>=5.2,<5.3"
    if [ "$with_dj61" = 1 ]; then
        py312=$(find_python 3.13 3.12) || { echo "bench: Python 3.12+ is needed for Django 6.1" >&2; return 1; }
        bench_venvs_for dj61 "$py312" "Django>=6.1,<6.2"
        local tag
        tag=$("$py312" -c 'import sys; print("%d%d" % sys.version_info[:2])')
        bench_venv "ours-dj52py$tag" "$py312" mailer -e ".[postgres,mysql]" "Django>=5.2,<5.3"
    fi
}
