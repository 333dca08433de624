#!/usr/bin/env bash
# Makes sure PostgreSQL, MariaDB and Redis answer on 127.0.0.1, starting them if they do not.
set -uo pipefail

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {
    local port=$1 name=$2
    for _ in $(seq 1 60); do answers "$port" && { echo "$name answers on $port"; return 0; }; sleep 0.5; done
    echo "$name does not answer on $port" >&2
    return 1
}

status=0
if ! answers 5432; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
wait_for 5432 PostgreSQL || status=1

if ! answers 3306; then
    echo "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for 3306 MariaDB || status=1

if ! answers 6379; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
wait_for 6379 Redis || status=1
exit $status
