#!/usr/bin/env bash
# Many tables at once through one `bq-ingest pull` on the local emulators (issue 12 §4): the e2e
# test `many_tables_at_once_load_exactly_once` (tests/tests/many_tables.rs) with MANY_TABLES
# unordered tables (default 200) and MANY_ORDERED ordered ones (default 20), through
# scripts/bench-e2e.sh (release binary, fresh stack). Prints the time to load, the ordered
# drain, and the consumer's peak RSS and CPU time.
set -euo pipefail
export MANY_TABLES="${MANY_TABLES:-200}" MANY_ORDERED="${MANY_ORDERED:-20}"
exec "$(dirname "${BASH_SOURCE[0]}")/bench-e2e.sh" many_tables many_tables_at_once_load_exactly_once \
  'many tables on the emulators'
