# Sourced by the bench-*-instructions.sh scripts: installs valgrind when missing (Debian) and
# defines `bench_binary <bench>`, which builds that ingest-core bench in release and prints the
# path of its executable. It also sets the shell options, goes to the repository's root and
# makes `$work`, a scratch folder removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
bench_binary() {
  cargo bench -p ingest-core --bench "$1" --no-run 2>&1 | tail -n 1 >&2
  cargo bench -p ingest-core --bench "$1" --no-run --message-format=json 2>/dev/null \
    | BENCH="$1" python3 -c 'import json,os,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]==os.environ["BENCH"] and m.get("executable"): print(m["executable"])'
}
