# Sourced by bench/run.sh: the benchmark's own virtualenvs, made from PyPI under bench/.venvs/.
#   ours-dj52  Python 3.11, Django 5.2, this package (editable: measures the work tree)
#   dm-dj52    Python 3.11, Django 5.2, django-mailer 2.3.2
#   ours-dj61  Python 3.12+, Django 6.1, this package (only with --dj61 or --full)
# Each also gets the PostgreSQL and MariaDB drivers. A stamp file skips pip when nothing changed.

bench_venv() {
    local name=$1 python=$2
    shift 2
    local dir=bench/.venvs/$name stamp="bench/.venvs/$name.stamp" want="$*"
    if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "bench: setting up $dir ($want)" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" \
        2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$dir/bin/python" -c "import django, mailer" || { echo "bench: $dir is broken" >&2; return 1; }
    echo "$want" >"$stamp"
}

bench_venvs() {
    local with_dj61=$1 py311 py312
    py311=$(find_python 3.11) || { echo "bench: Python 3.11 is needed" >&2; return 1; }
    bench_venv ours-dj52 "$py311" -e ".[postgres,mysql]" "Django>=5.2,<5.3"
    bench_venv dm-dj52 "$py311" "django-mailer==2.3.2" "Django>=5.2,<5.3" "psycopg[binary]>=3.1" "mysqlclient>=2.2.1"
    if [ "$with_dj61" = 1 ]; then
        py312=$(find_python 3.13 3.12) || { echo "bench: Python 3.12+ is needed for Django 6.1" >&2; return 1; }
        bench_venv ours-dj61 "$py312" -e ".[postgres,mysql]" "Django>=6.1,<6.2"
    fi
}
