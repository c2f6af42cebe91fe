#!/usr/bin/env bash
# The local demo: a PostgreSQL "inventory" and a MariaDB "retail" database on servers of
# their own (tandem-kit, data kept in .demo/ across runs), the demo schemas loaded once,
# and tandem syncing them. Ctrl-C stops everything this script started.
#
# Works with whatever exists so far: without the schema files it starts empty databases,
# without a tandem binary it just keeps the servers up.
#
# Settings (environment): DEMO_DIR (.demo), DEMO_PG_PORT (55432), DEMO_MARIA_PORT (53306),
# DEMO_CONFIG (configs/demo.toml), CARGO_TARGET_DIR (target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo_dir=${DEMO_DIR:-.demo}
pg_port=${DEMO_PG_PORT:-55432}
maria_port=${DEMO_MARIA_PORT:-53306}
config=${DEMO_CONFIG:-configs/demo.toml}
bin_dir=${CARGO_TARGET_DIR:-target}/release
kit=$bin_dir/tandem-kit
tandem=$bin_dir/tandem

say() { printf 'demo: %s\n' "$*" >&2; }

if [ ! -x "$kit" ]; then
    say "$kit is missing; build it with 'make demo' or 'cargo build --release -p tandem-testkit'"
    exit 1
fi

pids=()
stop_all() {
    trap - EXIT INT TERM
    # Newest first: tandem before the servers it talks to.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap stop_all EXIT
trap 'say "stopping"; exit 130' INT TERM

mkdir -p "$demo_dir"
"$kit" up --dir "$demo_dir" --pg-port "$pg_port" --maria-port "$maria_port" \
    >/dev/null 2>"$demo_dir/kit.log" &
pids+=($!)

say "starting PostgreSQL on $pg_port and MariaDB on $maria_port (data in $demo_dir)"
for _ in $(seq 1 600); do
    [ -f "$demo_dir/env" ] && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        say "tandem-kit failed:"
        cat "$demo_dir/kit.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -f "$demo_dir/env" ]; then
    say "the servers did not come up within 60 s; see $demo_dir/kit.log"
    exit 1
fi
# shellcheck source=/dev/null
. "$demo_dir/env"

pg() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TANDEM_PG_PORT" -U postgres "$@"; }
maria() { mariadb --no-defaults -h 127.0.0.1 -P "$TANDEM_MARIA_PORT" -u root "$@"; }

# Each database is created, and its schema loaded, only on the first run: later runs keep
# what the demo did (`make clean-demo` starts over).
if [ -z "$(pg -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'inventory'")" ]; then
    pg -d postgres -c 'CREATE DATABASE inventory'
    if [ -f configs/demo-inventory.sql ]; then
        say "loading configs/demo-inventory.sql into inventory"
        pg -d inventory -f configs/demo-inventory.sql >/dev/null
    else
        say "configs/demo-inventory.sql not found: inventory stays empty"
    fi
fi
if [ -z "$(maria -N -B -e "SHOW DATABASES LIKE 'retail'")" ]; then
    maria -e 'CREATE DATABASE retail'
    if [ -f configs/demo-retail.sql ]; then
        say "loading configs/demo-retail.sql into retail"
        maria retail <configs/demo-retail.sql
    else
        say "configs/demo-retail.sql not found: retail stays empty"
    fi
fi

say "inventory: postgres://postgres@127.0.0.1:$TANDEM_PG_PORT/inventory"
say "retail:    mysql://root@127.0.0.1:$TANDEM_MARIA_PORT/retail"
say "(shell settings: . $demo_dir/env)"

if [ -x "$tandem" ] && [ -f "$config" ]; then
    # The config names the default ports; point it at the ones in use.
    run_config=$demo_dir/demo.toml
    sed -e "s/127\.0\.0\.1:55432/127.0.0.1:$TANDEM_PG_PORT/g" \
        -e "s/127\.0\.0\.1:53306/127.0.0.1:$TANDEM_MARIA_PORT/g" "$config" >"$run_config"
    export INVENTORY_PASSWORD='' RETAIL_PASSWORD=''
    "$tandem" check -c "$run_config"
    "$tandem" run -c "$run_config" &
    pids+=($!)
    say "tandem is running (config $run_config); Ctrl-C stops everything"
    wait "${pids[1]}"
else
    [ -x "$tandem" ] || say "no tandem binary at $tandem yet"
    [ -f "$config" ] || say "no config at $config yet"
    say "the servers stay up; Ctrl-C stops them"
    wait "${pids[0]}"
fi
