#!/usr/bin/env bash
# `tandem verify` over 5,000,000 equal rows, then with 100 scattered differences.
#
# Usage: benches/verify.sh [ROWS]   (default 5000000; needs psql and mariadb clients)
# Starts throwaway servers with tandem-kit, loads the demo schemas with ROWS identical
# items on both sides (generate_series / seq_1_to_N), runs the release binary twice and
# prints the seconds of each run. Everything lives under a temporary directory that is
# removed at the end.
set -euo pipefail
ROWS=${1:-5000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d /tmp/tandem-verify-bench.XXXXXX)
chmod 755 "$DIR"   # PostgreSQL runs as `postgres` when we are root: it must reach its data dir
cargo build --release -q -p tandem -p tandem-testkit --manifest-path "$ROOT/Cargo.toml"
"$ROOT/target/release/tandem-kit" up --dir "$DIR" >"$DIR/kit.log" 2>&1 &
KIT=$!
trap 'kill $KIT 2>/dev/null; wait $KIT 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do [ -f "$DIR/env" ] && break; sleep 0.2; done
# shellcheck disable=SC1091
. "$DIR/env"
P="psql -h 127.0.0.1 -p $TANDEM_PG_PORT -U postgres -X -q -v ON_ERROR_STOP=1"
M="mariadb -h 127.0.0.1 -P $TANDEM_MARIA_PORT -u root"
$P -c "CREATE DATABASE bench" >/dev/null
$M -e "CREATE DATABASE bench"
sed 's/generate_series(1, 3000)/generate_series(1, 0)/' "$ROOT/configs/demo-inventory.sql" | $P bench >/dev/null
$M bench <"$ROOT/configs/demo-retail.sql"
echo "loading $ROWS rows on each side…"
$P bench -c "INSERT INTO items (sku, name, cost, unit_price, on_hand, reorder_point, supplier_id, updated_at)
  SELECT 'SKU-' || lpad(g::text, 8, '0'), 'Item #' || g, 1, round((4 + (g % 50) * 1.8)::numeric, 2),
         50 + g % 100, 10, 1 + g % 20, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE items" &
PG_LOAD=$!
$M bench -e "INSERT INTO products (sku, title, price, stock_qty, updated_at)
  SELECT CONCAT('SKU-', LPAD(seq, 8, '0')), CONCAT('Item #', seq), ROUND(4 + (seq % 50) * 1.8, 2),
         50 + seq % 100, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_$ROWS;
  ANALYZE TABLE products" >/dev/null &
MY_LOAD=$!
wait $PG_LOAD
wait $MY_LOAD
sed -e "s#postgres://postgres@127.0.0.1:55432/inventory#postgres://postgres@127.0.0.1:$TANDEM_PG_PORT/bench#" \
    -e "s#mysql://root@127.0.0.1:53306/retail#mysql://root@127.0.0.1:$TANDEM_MARIA_PORT/bench#" \
    "$ROOT/configs/demo.toml" >"$DIR/tandem.toml"
export INVENTORY_PASSWORD='' RETAIL_PASSWORD=''
run() {
  local start end
  start=$(date +%s.%N)
  "$ROOT/target/release/tandem" verify -c "$DIR/tandem.toml" --mapping products >"$DIR/out.txt" || true
  end=$(date +%s.%N)
  tail -2 "$DIR/out.txt"
  echo "$1: $(echo "$end - $start" | bc) s"
}
run "equal"
STEP=$((ROWS / 100))
$M bench -e "UPDATE products SET price = price + 1 WHERE sku IN
  (SELECT CONCAT('SKU-', LPAD(seq, 8, '0')) FROM seq_1_to_${ROWS}_step_${STEP})"
run "100 differences"
