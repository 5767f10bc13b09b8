#!/usr/bin/env bash
# The whole path's cost in CPU instructions, counted by callgrind inside `handle_all` only (the
# bucket's set-up and drop are outside): repeatable whatever else the machine runs. Prints
# instructions per marker (markers-only stream) and per event (the 90 % / 10 % stream), and
# with `--annotate` the functions that cost most, inclusive. Needs valgrind (Debian).
. "$(dirname "${BASH_SOURCE[0]}")/callgrind-bench.sh"
bin=$(bench_binary whole_path)
for which in markers mixed; do
  WHOLE_PATH_ONCE=$which valgrind --tool=callgrind --toggle-collect='*handle_all*' \
    --callgrind-out-file="$work/$which.out" "$bin" >"$work/$which.log" 2>&1
  total=$(grep -m1 '^summary:' "$work/$which.out" | awk '{print $2}')
  events=$(sed -n "s/^$which: handled \([0-9]*\) events.*/\1/p" "$work/$which.log")
  echo "$which: $(( total / events )) instructions per event ($events events, $total in all)"
  if [ "${1:-}" = "--annotate" ]; then
    callgrind_annotate --inclusive=yes "$work/$which.out" 2>/dev/null | sed -n '1,60p' | cut -c1-200
  fi
done
