#!/usr/bin/env bash
# Routing cost in CPU instructions per event, counted by callgrind: repeatable whatever else
# the machine runs (criterion's wall times on a shared 2-core machine vary by ±20 %).
# Prints instructions per no-op event and per success marker. Needs valgrind (Debian).
. "$(dirname "${BASH_SOURCE[0]}")/callgrind-bench.sh"
bin=$(bench_binary routing)
count() { # which -> total instructions
  ROUTING_ONCE=$1 valgrind --tool=callgrind --callgrind-out-file="$work/$1.out" "$bin" >"$work/$1.log" 2>&1
  grep -m1 '^summary:' "$work/$1.out" | awk '{print $2}'
}
# The corpus build is the same in every run: subtract a run that routes nothing.
base=$(ROUTING_ONCE=none valgrind --tool=callgrind --callgrind-out-file="$work/none.out" "$bin" >/dev/null 2>&1; grep -m1 '^summary:' "$work/none.out" | awk '{print $2}')
for which in noop success; do
  total=$(count "$which")
  events=$(sed -n "s/^$which: routed [0-9]* of \([0-9]*\)$/\1/p" "$work/$which.log")
  echo "$which: $(( (total - base) / events )) instructions per event ($events events)"
done
