#!/usr/bin/env bash
# Measures `bq-ingest backfill` on the local emulators (issue 12 §3): BACKFILL_MARKERS one-row
# batches (default 1,000) through --dry-run, --mode notifications and --mode local, each timed
# with its CPU time and peak RSS (the e2e test `backfill_rates_on_the_emulators` in
# tests/tests/backfill.rs, through scripts/bench-e2e.sh: release binary, fresh stack). The
# in-process figure on a generated store of 100,000 markers is
# `cargo bench -p ingest-service --bench backfill`.
set -euo pipefail
export BACKFILL_MARKERS="${BACKFILL_MARKERS:-1000}"
exec "$(dirname "${BASH_SOURCE[0]}")/bench-e2e.sh" backfill backfill_rates_on_the_emulators \
  'backfill on the emulators'
