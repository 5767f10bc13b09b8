#!/usr/bin/env bash
# Many tables at once through one `bq-ingest pull` on the local emulators (issue 12 §4): the e2e
# test `many_tables_at_once_load_exactly_once` (tests/tests/many_tables.rs) with MANY_TABLES
# unordered tables (default 200) and MANY_ORDERED ordered ones (default 20), with the release
# binary, on its own isolated emulator stack (target/dev-stack-bench-many-tables), stopped on
# exit. Prints the time to load, the ordered drain, and the consumer's peak RSS and CPU time.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export MANY_TABLES="${MANY_TABLES:-200}" MANY_ORDERED="${MANY_ORDERED:-20}"
export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-bench-many-tables}"

scripts/dev-stack.sh install
trap 'scripts/dev-stack.sh down >/dev/null 2>&1 || true' EXIT
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"

cargo build --release -p bq-ingest --quiet
export BQ_INGEST_BIN="$repo/target/release/bq-ingest"
out="$(cargo test -q -p bq-ingest-e2e --test many_tables -- --nocapture 2>&1)" || {
  printf '%s\n' "$out" | tail -n 40 >&2
  exit 1
}
printf '%s\n' "$out" | grep -F 'many tables on the emulators'
