# Shared helpers for scripts/*.sh and .ci/run. Source it; do not run it.

# find_python 3.12 3.13 -> path of the first working interpreter of those versions
find_python() {
    local version candidate
    for version in "$@"; do
        for candidate in "python$version" "$(pyenv root 2>/dev/null)"/versions/"$version"*/bin/python"$version" \
                         /usr/bin/python"$version" /usr/local/bin/python"$version"; do
            if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
                command -v "$candidate" 2>/dev/null || echo "$candidate"
                return 0
            fi
        done
    done
    return 1
}

# ensure_system_packages: what pip cannot install (the MariaDB client headers for mysqlclient).
ensure_system_packages() {
    local missing=()
    dpkg -s libmariadb-dev >/dev/null 2>&1 || missing+=(libmariadb-dev)
    dpkg -s pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing system packages: ${missing[*]}"
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
    fi
}

# ensure_chromium: Debian's Chromium for the browser tests (never `playwright install`).
# Returns non-zero if it is missing and cannot be installed.
ensure_chromium() {
    local chromium=${MAILER_CHROMIUM:-/usr/bin/chromium}
    [ -x "$chromium" ] && return 0
    echo "installing chromium for the browser tests"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    [ -x "$chromium" ]
}

# make_env DIR PYTHON "Django spec" [extra pip args...]: a virtualenv with the project and its test tools.
make_env() {
    local dir=$1 python=$2 django=$3
    shift 3
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,postgres,mysql]" "$django" "$@" \
        2>&1 | grep -v "^WARNING: Location" || true
    "$dir/bin/python" -c "import django, mailer; print('$dir: Django', django.get_version())"
}
