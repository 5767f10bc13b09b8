#!/usr/bin/env bash
# Prints the failing tests' output from a `cargo test` log: each test binary's `failures:`
# section (the panics, then the names) up to its `test result: FAILED` line, and cargo's
# closing list of failed targets. Used at the end of a failed run, whose log is long and
# whose tail alone would not say which assertion failed. Usage: test-failures.sh LOG [MAX_LINES]
set -euo pipefail
log="$1"
max="${2:-400}"
{
  sed -n '/^failures:$/,/^test result: FAILED/p' "$log"
  sed -n '/^error: [0-9]* targets\? failed:$/,$p' "$log"
} | head -n "$max"
