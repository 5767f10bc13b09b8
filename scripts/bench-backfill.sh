#!/usr/bin/env bash
# Measures `bq-ingest backfill` on the local emulators (issue 12 §3): BACKFILL_MARKERS one-row
# batches (default 1,000) through --dry-run, --mode notifications and --mode local, each timed
# with its CPU time and peak RSS (the e2e test `backfill_rates_on_the_emulators` in
# tests/tests/backfill.rs, with the release binary). Starts its own isolated emulator stack
# (target/dev-stack-bench-backfill, a fresh bucket) and stops it on exit. The in-process figure
# on a generated store of 100,000 markers is `cargo bench -p ingest-service --bench backfill`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export BACKFILL_MARKERS="${BACKFILL_MARKERS:-1000}"
export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-bench-backfill}"

scripts/dev-stack.sh install
trap 'scripts/dev-stack.sh down >/dev/null 2>&1 || true' EXIT
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"

cargo build --release -p bq-ingest --quiet
export BQ_INGEST_BIN="$repo/target/release/bq-ingest"
out="$(cargo test -q -p bq-ingest-e2e --test backfill -- --nocapture --exact backfill_rates_on_the_emulators 2>&1)" || {
  printf '%s\n' "$out" | tail -n 40 >&2
  exit 1
}
printf '%s\n' "$out" | grep -F 'backfill on the emulators'
