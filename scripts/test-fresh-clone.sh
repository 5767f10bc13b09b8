#!/usr/bin/env bash
# A fresh clone with nothing beside it runs both README commands: clones this repository into an
# empty folder (no test data outside the repository, no installed emulators), runs
# the two commands of the README's first code block there, and checks that the first loaded the
# batch and the second passed. What is checked is the committed tree (CI runs on a clean checkout).
# The second command, scripts/test.sh, runs in the clone with BQ_INGEST_NESTED_TEST=1: it skips
# this script (it would recurse) and the container image test (the enclosing run did it).
#
# Caches that are not content are shared to keep it fast: cargo's registry and pip's wheel
# cache (both in $HOME), and the build directory target/fresh-clone of this checkout.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

git clone --quiet "$repo" "$work/bq-ingest"
[ "$(ls -A "$work")" = "bq-ingest" ] || { echo "the clone's folder holds more than the clone" >&2; exit 1; }
commands="$(awk '/^```sh$/{block=1; next} /^```$/{block=0} block && NF' "$work/bq-ingest/README.md" | sed 's/[[:space:]]*#.*$//')"
first="$(sed -n 1p <<<"$commands")"
second="$(sed -n 2p <<<"$commands")"
[ -n "$first" ] && [ -n "$second" ] || { echo "the README's first code block does not hold two commands" >&2; exit 1; }

cd "$work/bq-ingest"
run() { # name command: runs it as a newcomer would, output to $work/<name>.log
  echo "== in a fresh clone at $work/bq-ingest: $2"
  if ! env -u BQ_INGEST_TESTDATA -u DEV_STACK_DIR -u DEV_STACK_INSTALL_DIR \
      -u STORAGE_EMULATOR_HOST -u BIGQUERY_EMULATOR_HOST -u PUBSUB_EMULATOR_HOST \
      -u GOOGLE_CLOUD_PROJECT -u INGEST_BUCKET -u INGEST_TOPIC -u INGEST_SUBSCRIPTION \
      BQ_INGEST_NESTED_TEST=1 CARGO_TARGET_DIR="$repo/target/fresh-clone" \
      bash -c "$2" >"$work/$1.log" 2>&1 </dev/null; then
    "$repo/scripts/test-failures.sh" "$work/$1.log" 150 >&2
    tail -n 30 "$work/$1.log" >&2
    echo "the README's $1 command failed in a fresh clone: $2" >&2
    exit 1
  fi
}

run first "$first"
grep -q '^(25 rows)$' "$work/first.log" || { tail -n 40 "$work/first.log" >&2; echo "no '(25 rows)' in its output" >&2; exit 1; }
grep -q '^(5 rows)$' "$work/first.log" || { tail -n 40 "$work/first.log" >&2; echo "no '(5 rows)' of the transform batch in its output" >&2; exit 1; }
grep 'loaded in' "$work/first.log"
echo "== the README's first command works in a fresh clone"

run second "$second"
grep -E '^test result: ' "$work/second.log" | awk '{p += $4; f += $6} END {print "== " p " passed, " f " failed"}'
! grep -qE '^test result: FAILED' "$work/second.log" || { echo "a test failed in the fresh clone" >&2; exit 1; }
echo "== the README's second command passes in a fresh clone"
