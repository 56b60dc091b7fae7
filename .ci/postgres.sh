#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests and print its URL on stdout.
# Usage: eval "$(.ci/postgres.sh start DIR)"; ...; .ci/postgres.sh stop DIR
set -euo pipefail
action=$1 dir=$2
port=${INTAKE_TEST_PG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
  echo "installing PostgreSQL (Debian package)" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$dir"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
case "$action" in
  start)
    mkdir -p "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    echo "export INTAKE_TEST_PG_URL=postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
esac
