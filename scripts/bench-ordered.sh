#!/usr/bin/env bash
# Measures how fast one ordered table's backlog drains through `bq-ingest pull` on the local
# emulators: 20 one-row batches queued behind START_BACKFILL_FILENAME=_HISTORYDONE, timed from
# the `_HISTORYDONE` upload to the last batch applied (the e2e test
# `drain_rate_of_one_ordered_table` in tests/tests/ordered.rs). Starts its own isolated emulator
# stack (target/dev-stack-bench-ordered) and stops it on exit. RUNS=<n> repeats the measure
# (default 3). The figure depends on the machine's load: run it on an idle machine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs="${RUNS:-3}"
export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-bench-ordered}"

scripts/dev-stack.sh install
trap 'scripts/dev-stack.sh down >/dev/null 2>&1 || true' EXIT
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"

cargo build -p bq-ingest --quiet
cargo test -p bq-ingest-e2e --test ordered --no-run --quiet 2>/dev/null

echo "ordered drain, one table, 20 batches ($runs run(s)):"
for _ in $(seq 1 "$runs"); do
  out="$(cargo test -q -p bq-ingest-e2e --test ordered -- --nocapture --exact drain_rate_of_one_ordered_table 2>&1)" || {
    printf '%s\n' "$out" | tail -n 40 >&2
    exit 1
  }
  printf '%s\n' "$out" | grep -F 'ordered drain on the emulators' | sed 's/^/  /'
done
