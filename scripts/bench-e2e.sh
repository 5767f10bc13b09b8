#!/usr/bin/env bash
# Runs one end-to-end test as a benchmark: on its own isolated emulator stack
# (target/dev-stack-bench-<test file>, emptied first), stopped on exit, with the release binary,
# and prints the lines of its output that carry the figures. The scripts bench-backfill.sh and
# bench-many-tables.sh call it; their environment variables reach the test.
#
#   scripts/bench-e2e.sh <test file> <test name> <what the figures' lines contain>
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
file="$1" test="$2" figures="$3"
export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-bench-$file}"

scripts/dev-stack.sh install
trap 'scripts/dev-stack.sh down >/dev/null 2>&1 || true' EXIT
# Empty emulators: their data is kept across down/up, and what earlier runs left slows them
# (local-bigquery's catalog of every table created, fake-gcs-server's folder of every object).
scripts/dev-stack.sh down >/dev/null 2>&1 || true
rm -rf "$DEV_STACK_DIR/run"
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"

cargo build --release -p bq-ingest --quiet
export BQ_INGEST_BIN="$repo/target/release/bq-ingest"
log="$repo/target/bench-e2e-$file.log"
cargo test -q -p bq-ingest-e2e --test "$file" -- --nocapture --exact "$test" >"$log" 2>&1 || {
  # Why it failed (the panic's message, before its backtrace), then how it ended.
  grep -A 12 -m 1 'panicked at' "$log" >&2 || true
  tail -n 20 "$log" >&2
  echo "bench-e2e: $test failed; its whole output: $log" >&2
  exit 1
}
grep -F "$figures" "$log"
