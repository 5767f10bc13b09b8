#!/usr/bin/env bash
# A fresh clone with nothing beside it runs the README's first command: clones this repository
# into an empty folder (no ../shared, no test data outside the repository, no installed
# emulators), runs the first command of the README's first code block there, and checks that
# it loaded the batch. What is checked is the committed tree (CI runs on a clean checkout).
#
# Caches that are not content are shared to keep it fast: cargo's registry and pip's wheel
# cache (both in $HOME), and the build directory target/fresh-clone of this checkout.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

git clone --quiet "$repo" "$work/bq-ingest"
[ "$(ls -A "$work")" = "bq-ingest" ] || { echo "the clone's folder holds more than the clone" >&2; exit 1; }
command="$(awk '/^```sh$/{block=1; next} block && NF {print; exit}' "$work/bq-ingest/README.md" | sed 's/[[:space:]]*#.*$//')"
[ -n "$command" ] || { echo "no command in the README's first code block" >&2; exit 1; }
echo "== in a fresh clone at $work/bq-ingest: $command"

cd "$work/bq-ingest"
log="$work/first-command.log"
if ! env -u BQ_INGEST_TESTDATA -u DEV_STACK_DIR -u DEV_STACK_INSTALL_DIR \
    -u STORAGE_EMULATOR_HOST -u BIGQUERY_EMULATOR_HOST -u PUBSUB_EMULATOR_HOST \
    CARGO_TARGET_DIR="$repo/target/fresh-clone" bash -c "$command" >"$log" 2>&1 </dev/null; then
  tail -n 60 "$log" >&2
  echo "the README's first command failed in a fresh clone" >&2
  exit 1
fi
grep -q '^(25 rows)$' "$log" || { tail -n 40 "$log" >&2; echo "no '(25 rows)' in its output" >&2; exit 1; }
grep 'loaded in' "$log"
echo "== the README's first command works in a fresh clone"
