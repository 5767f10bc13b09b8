#!/usr/bin/env bash
# The main job on a fresh machine: installs and starts the local emulators (GCS, BigQuery,
# Pub/Sub), starts `bq-ingest pull` on the bucket's notification subscription, uploads the
# TPC-H NATION batch from testdata/nation under demo/nation/ with a bucket-level
# _config/load.json {"fieldDelimiter": "|"}, waits for the notification-driven load, prints the
# rows read back from BigQuery; then loads the same files as a transform batch (a query over the
# external table temp_ext, with external.json and bq_transform.sql) into nations per region, and
# stops everything it started.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
testdata="${BQ_INGEST_TESTDATA:-$repo/testdata}"
export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-demo}"
dataset=demo

say() { printf '\n== %s\n' "$*"; }
[ -f "$testdata/nation/part-m-00001" ] || { echo "test data not found at $testdata" >&2; exit 1; }

say "installing the emulators (pinned, idempotent)"
scripts/dev-stack.sh install

say "building bq-ingest"
cargo build -p bq-ingest --quiet 2>&1 | tail -n 5
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/bq-ingest"

pull_pid=""
cleanup() {
  [ -n "$pull_pid" ] && kill -TERM "$pull_pid" 2>/dev/null && wait "$pull_pid" 2>/dev/null || true
  scripts/dev-stack.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "starting the emulators"
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"
project="$GOOGLE_CLOUD_PROJECT"
bq="$BIGQUERY_EMULATOR_HOST/bigquery/v2/projects/$project"
gcs_upload() { # name file
  curl -fsS -X POST --data-binary @"$2" -H 'Content-Type: application/octet-stream' \
    "$STORAGE_EMULATOR_HOST/upload/storage/v1/b/$INGEST_BUCKET/o?uploadType=media&name=$1" >/dev/null
}
bq_post() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$bq/$1"; }
query() { # sql → JSON response of jobs.query
  bq_post queries "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "useLegacySql": False}))' "$1")"
}

say "starting bq-ingest pull --subscription $INGEST_SUBSCRIPTION"
mkdir -p "$DEV_STACK_DIR/logs"
BQ_PROJECT="$project" WAIT_FOR_JOB_SECONDS=30 \
  "$bin" pull --subscription "$INGEST_SUBSCRIPTION" >"$DEV_STACK_DIR/logs/bq-ingest.log" 2>&1 &
pull_pid=$!

say "creating dataset $dataset and table nation"
bq_post datasets "{\"datasetReference\": {\"projectId\": \"$project\", \"datasetId\": \"$dataset\"}}" >/dev/null || true
bq_post "datasets/$dataset/tables" "$(python3 -c '
import json, sys
print(json.dumps({"tableReference": {"projectId": sys.argv[1], "datasetId": sys.argv[2], "tableId": "nation"},
                  "schema": {"fields": json.load(open(sys.argv[3]))}}))' "$project" "$dataset" "$testdata/nation_schema.json")" >/dev/null

say "uploading gs://$INGEST_BUCKET/_config/load.json and $dataset/nation/{part-m-00000,part-m-00001,_SUCCESS}"
tmp="$(mktemp)"; printf '{"fieldDelimiter": "|"}' >"$tmp"
gcs_upload "_config/load.json" "$tmp"; rm -f "$tmp"
gcs_upload "$dataset/nation/part-m-00000" "$testdata/nation/part-m-00000"
gcs_upload "$dataset/nation/part-m-00001" "$testdata/nation/part-m-00001"
start=$(date +%s.%N)
gcs_upload "$dataset/nation/_SUCCESS" "$testdata/nation/_SUCCESS"

say "waiting for the notification-driven load"
rows=0
for _ in $(seq 1 300); do
  rows="$(query "SELECT COUNT(*) FROM \`$project.$dataset.nation\`" | python3 -c 'import json,sys; r=json.load(sys.stdin).get("rows") or [{"f":[{"v":"0"}]}]; print(r[0]["f"][0]["v"])' 2>/dev/null || echo 0)"
  [ "$rows" -ge 25 ] 2>/dev/null && break
  kill -0 "$pull_pid" 2>/dev/null || { echo "bq-ingest pull exited:" >&2; tail -n 40 "$DEV_STACK_DIR/logs/bq-ingest.log" >&2; exit 1; }
  sleep 0.2
done
end=$(date +%s.%N)
if [ "$rows" != 25 ]; then
  echo "expected 25 rows, found $rows; bq-ingest log:" >&2
  tail -n 40 "$DEV_STACK_DIR/logs/bq-ingest.log" >&2
  exit 1
fi
python3 -c 'import sys; print(f"loaded in {float(sys.argv[2]) - float(sys.argv[1]):.2f} s from marker upload to rows visible")' "$start" "$end"

say "rows of $project.$dataset.nation, read back from BigQuery"
query "SELECT N_NATIONKEY, N_NAME, N_REGIONKEY FROM \`$project.$dataset.nation\` ORDER BY N_NATIONKEY" | python3 -c '
import json, sys
rows = json.load(sys.stdin).get("rows", [])
print("N_NATIONKEY  N_NAME           N_REGIONKEY")
for r in rows:
    k, n, g = (c["v"] for c in r["f"])
    print(f"{k:>11}  {n:<15}  {g:>11}")
print(f"({len(rows)} rows)")'

say "what bq-ingest logged for the batch"
grep -h '"outcome"' "$DEV_STACK_DIR/logs/bq-ingest.log" | tail -n 3 || true

say "a transform batch: the same files through temp_ext into $dataset.nations_per_region"
bq_post "datasets/$dataset/tables" "{\"tableReference\": {\"projectId\": \"$project\", \"datasetId\": \"$dataset\", \"tableId\": \"nations_per_region\"}, \"schema\": {\"fields\": [{\"name\": \"region\", \"type\": \"INT64\"}, {\"name\": \"nations\", \"type\": \"INT64\"}]}}" >/dev/null
tmp="$(mktemp)"
python3 -c '
import json, sys
print(json.dumps({"sourceFormat": "CSV", "csvOptions": {"fieldDelimiter": "|"},
                  "schema": {"fields": json.load(open(sys.argv[1]))}}))' "$testdata/nation_schema.json" >"$tmp"
gcs_upload "$dataset/nations_per_region/_config/external.json" "$tmp"
printf 'INSERT {dest_dataset}.{dest_table} (region, nations)\nSELECT N_REGIONKEY, COUNT(*) FROM temp_ext GROUP BY N_REGIONKEY\n' >"$tmp"
gcs_upload "$dataset/nations_per_region/_config/bq_transform.sql" "$tmp"; rm -f "$tmp"
echo "_config/bq_transform.sql:"; echo "  INSERT {dest_dataset}.{dest_table} (region, nations)"
echo "  SELECT N_REGIONKEY, COUNT(*) FROM temp_ext GROUP BY N_REGIONKEY"
gcs_upload "$dataset/nations_per_region/b1/part-m-00001" "$testdata/nation/part-m-00001"
gcs_upload "$dataset/nations_per_region/b1/_SUCCESS" "$testdata/nation/_SUCCESS"
regions=0
for _ in $(seq 1 300); do
  regions="$(query "SELECT COUNT(*) FROM \`$project.$dataset.nations_per_region\`" | python3 -c 'import json,sys; r=json.load(sys.stdin).get("rows") or [{"f":[{"v":"0"}]}]; print(r[0]["f"][0]["v"])' 2>/dev/null || echo 0)"
  [ "$regions" -ge 5 ] 2>/dev/null && break
  kill -0 "$pull_pid" 2>/dev/null || { echo "bq-ingest pull exited:" >&2; tail -n 40 "$DEV_STACK_DIR/logs/bq-ingest.log" >&2; exit 1; }
  sleep 0.2
done
if [ "$regions" != 5 ]; then
  echo "expected 5 regions, found $regions; bq-ingest log:" >&2
  tail -n 40 "$DEV_STACK_DIR/logs/bq-ingest.log" >&2
  exit 1
fi
query "SELECT region, nations FROM \`$project.$dataset.nations_per_region\` ORDER BY region" | python3 -c '
import json, sys
rows = json.load(sys.stdin).get("rows", [])
print("region  nations")
for r in rows:
    g, n = (c["v"] for c in r["f"])
    print(f"{g:>6}  {n:>7}")
print(f"({len(rows)} rows)")'
grep -h '"outcome"' "$DEV_STACK_DIR/logs/bq-ingest.log" | grep nations_per_region | grep _SUCCESS | tail -n 1 || true
