#!/usr/bin/env bash
# The local demo: a PostgreSQL "inventory" and a MariaDB "retail" database on servers of
# their own (tandem-kit, data kept in .demo/ across runs), the demo schemas loaded once,
# tandem syncing them, and a live workload (sales in the shop, goods receipts and price
# changes in the warehouse, now and then a conflicting edit of one product on both sides).
# The terminal shows `tandem status` once a second with the status page URL; Ctrl-C stops
# everything this script started, in order: workload, tandem, servers.
#
# Settings (environment): DEMO_DIR (.demo), DEMO_PG_PORT (55432), DEMO_MARIA_PORT (53306),
# DEMO_LISTEN (127.0.0.1:9187), DEMO_CONFIG (configs/demo.toml), DEMO_RATE (workload
# operations per second, 12), DEMO_PROFILE (release; `debug` skips the release build),
# DEMO_SKIP_BUILD (1: use the binaries as they are), CARGO_TARGET_DIR (target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo_dir=${DEMO_DIR:-.demo}
pg_port=${DEMO_PG_PORT:-55432}
maria_port=${DEMO_MARIA_PORT:-53306}
listen=${DEMO_LISTEN:-127.0.0.1:9187}
config=${DEMO_CONFIG:-configs/demo.toml}
rate=${DEMO_RATE:-12}
profile=${DEMO_PROFILE:-release}
bin_dir=${CARGO_TARGET_DIR:-target}/$profile
kit=$bin_dir/tandem-kit
tandem=$bin_dir/tandem
load=$bin_dir/tandem-demo-load

say() { printf 'demo: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

for tool in psql mariadb setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing; run 'make setup' (or 'make demo')"
done
[ -f "$config" ] || die "no config at $config"

if [ "${DEMO_SKIP_BUILD:-0}" != 1 ]; then
    command -v cargo >/dev/null || die "cargo is missing; install Rust (https://rustup.rs)"
    flag=()
    [ "$profile" = release ] && flag=(--release)
    say "building tandem, tandem-kit and tandem-demo-load ($profile)"
    cargo build "${flag[@]}" -p tandem -p tandem-testkit --bins
fi
for bin in "$kit" "$tandem" "$load"; do
    [ -x "$bin" ] || die "$bin is missing; build with 'cargo build --release -p tandem -p tandem-testkit'"
done

mkdir -p "$demo_dir"
# A left-over env file is either a demo that still runs or one that was killed outright.
if [ -f "$demo_dir/env" ]; then
    if (. "$demo_dir/env" && psql -X -q -h 127.0.0.1 -p "$TANDEM_PG_PORT" -U postgres \
        -d postgres -c 'SELECT 1' >/dev/null 2>&1); then
        die "a demo is already running on $demo_dir; stop it first (Ctrl-C in its terminal)"
    fi
    rm -f "$demo_dir/env"
fi

# Background processes run in sessions of their own, so that Ctrl-C reaches only this
# script, which then stops them in order — tandem must finish its last transaction while
# both servers are still up.
pids=()
names=()
start() {
    local name=$1 log=$2
    shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    pids+=($!)
    names+=("$name")
}
running() { kill -0 "$1" 2>/dev/null; }
stop_all() {
    # Stopping is bounded (45 s a process); a second Ctrl-C must not leave things running.
    trap '' INT TERM
    trap - EXIT
    [ ${#pids[@]} -gt 0 ] || return 0
    say "stopping ${names[*]}"
    # Newest first: the workload, then tandem, then the servers it talks to.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local pid=${pids[i]}
        running "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 450); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            say "${names[i]} did not stop within 45 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    say "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start tandem-kit "$demo_dir/kit.log" \
    "$kit" up --dir "$demo_dir" --pg-port "$pg_port" --maria-port "$maria_port"
say "starting PostgreSQL on $pg_port and MariaDB on $maria_port (data in $demo_dir)"
for _ in $(seq 1 600); do
    [ -f "$demo_dir/env" ] && break
    running "${pids[0]}" || {
        cat "$demo_dir/kit.log" >&2
        die "tandem-kit failed (above)"
    }
    sleep 0.1
done
[ -f "$demo_dir/env" ] || die "the servers did not come up within 60 s; see $demo_dir/kit.log"
# shellcheck source=/dev/null
. "$demo_dir/env"

pg() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TANDEM_PG_PORT" -U postgres "$@"; }
maria() { mariadb --no-defaults -h 127.0.0.1 -P "$TANDEM_MARIA_PORT" -u root "$@"; }

# Each database is created, and its schema loaded, only on the first run: later runs keep
# what the demo did (`make clean-demo` starts over).
if [ -z "$(pg -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'inventory'")" ]; then
    say "creating inventory from configs/demo-inventory.sql"
    pg -d postgres -c 'CREATE DATABASE inventory'
    pg -d inventory -f configs/demo-inventory.sql >/dev/null
fi
if [ -z "$(maria -N -B -e "SHOW DATABASES LIKE 'retail'")" ]; then
    say "creating retail from configs/demo-retail.sql"
    maria -e 'CREATE DATABASE retail'
    maria retail <configs/demo-retail.sql
fi
inventory_url=postgres://postgres@127.0.0.1:$TANDEM_PG_PORT/inventory
retail_url=mysql://root@127.0.0.1:$TANDEM_MARIA_PORT/retail

# The config names the default ports; point it at the ones in use.
run_config=$demo_dir/demo.toml
sed -e "s/127\.0\.0\.1:55432/127.0.0.1:$TANDEM_PG_PORT/g" \
    -e "s/127\.0\.0\.1:53306/127.0.0.1:$TANDEM_MARIA_PORT/g" \
    -e "s/^listen = .*/listen = \"$listen\"/" "$config" >"$run_config"
export INVENTORY_PASSWORD='' RETAIL_PASSWORD=''
"$tandem" check -c "$run_config" >"$demo_dir/check.log" 2>&1 || {
    cat "$demo_dir/check.log" >&2
    die "tandem check failed (above)"
}
# Its log goes to a file: no colour codes there.
start tandem "$demo_dir/tandem.log" env NO_COLOR=1 "$tandem" run -c "$run_config"
tandem_pid=${pids[-1]}
for _ in $(seq 1 300); do
    "$tandem" status --addr "$listen" >/dev/null 2>&1 && break
    running "$tandem_pid" || {
        tail -n 30 "$demo_dir/tandem.log" >&2
        die "tandem exited (log above, in $demo_dir/tandem.log)"
    }
    sleep 0.2
done

start workload "$demo_dir/workload.log" \
    "$load" --pg "$inventory_url" --mysql "$retail_url" --rate "$rate"
load_pid=${pids[-1]}

header() {
    printf 'tandem demo — status page: http://%s/   (Ctrl-C stops everything)\n' "$listen"
    printf 'inventory: %s   retail: %s\n' "$inventory_url" "$retail_url"
    printf 'logs: %s/tandem.log, %s/workload.log\n' "$demo_dir" "$demo_dir"
    grep '^load:' "$demo_dir/workload.log" 2>/dev/null | tail -n 1 || true
    echo
}
header
# On a terminal: the status table refreshed in place, like `tandem status --watch`, under a
# header that stays; otherwise (a log, CI) a new table every 10 s.
tty=0
[ -t 1 ] && tty=1
while :; do
    running "$tandem_pid" || {
        tail -n 30 "$demo_dir/tandem.log" >&2
        die "tandem exited (log above, in $demo_dir/tandem.log)"
    }
    running "$load_pid" || {
        tail -n 5 "$demo_dir/workload.log" >&2
        die "the workload exited (above)"
    }
    table=$("$tandem" status --addr "$listen" 2>&1 || true)
    if [ $tty = 1 ]; then
        printf '\033[2J\033[H'
        header
        printf '%s\n' "$table"
        sleep 1
    else
        date '+%T'
        printf '%s\n' "$table"
        grep '^load:' "$demo_dir/workload.log" 2>/dev/null | tail -n 1 || true
        sleep 10
    fi
done
