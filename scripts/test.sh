#!/usr/bin/env bash
# Runs every test of bq-ingest: unit, doc, conformance (memory and emulators) and end-to-end.
# Installs and starts its own emulator stack (isolated under target/dev-stack-test) and stops it
# on exit. Works on a fresh machine with no standard input. Extra arguments go to `cargo test`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-test}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== toolchain: $(cargo --version)"
echo "== emulators: install (pinned, idempotent)"
scripts/dev-stack.sh install

echo "== emulators: start"
trap 'scripts/dev-stack.sh down >/dev/null 2>&1 || true' EXIT
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"
scripts/dev-stack.sh status

# First, while the stack is fresh: one of these checks the emulator's first concurrent jobs.
echo "== the local-bigquery patch, over REST (scripts/dev-stack/local-bigquery)"
python3 scripts/dev-stack/local-bigquery/test_patch.py

echo "== build"
cargo build --workspace --all-targets --locked 2>&1 | tail -n 3

echo "== tests"
# The log is kept so that a failure's panics can be repeated at the end of the output.
test_log="$repo/target/test.log"
mkdir -p "$repo/target"
if ! cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$test_log"; then
  echo "== the failing tests' output, repeated from $test_log"
  scripts/test-failures.sh "$test_log"
  exit 1
fi

echo "== example: embedding (exits non-zero unless the batch loads once)"
cargo run --quiet --locked -p bq-ingest-embedding

if [ -z "${BQ_INGEST_NESTED_TEST:-}" ]; then
  echo "== a fresh clone runs both README commands"
  scripts/test-fresh-clone.sh
fi

echo "== the Terraform module (parsed with python-hcl2; no terraform binary here)"
deploy/terraform/test.sh

if [ -z "${BQ_INGEST_NESTED_TEST:-}" ]; then
  echo "== the container image (FROM scratch under podman, against this stack)"
  deploy/test-image.sh
fi
