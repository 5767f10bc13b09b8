#!/usr/bin/env bash
# Builds the bq-ingest image's runtime stage (deploy/Containerfile, from `FROM scratch` on) with
# a static binary built here, and tests it under podman against the local emulators:
#   - the image is under 25 MB and runs as a non-root user;
#   - it reaches the emulators by host name only (an /etc/hosts entry), not by IP address;
#   - a real GCS notification, pushed by the Pub/Sub emulator's push subscription to the
#     container's $PORT, loads the TPC-H nation batch: 25 rows;
#   - SIGTERM stops it cleanly (exit status 0) within Cloud Run's 10 s.
# Prints the image size and the start-to-ready time. Installs podman, buildah and runc from
# Debian when they are missing (as root). Uses the stack in $DEV_STACK_DIR (started if needed).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export DEV_STACK_DIR="${DEV_STACK_DIR:-$repo/target/dev-stack-image}"
work="$repo/target/image-test"
image=localhost/bq-ingest:test
container=bq-ingest-image-test
emulators_host=emulators.bq-ingest.test
dataset=image_test
subscription=bq-ingest-image-push
max_bytes=25000000
stop_budget=10

say() { printf '== %s\n' "$*"; }
fail() { printf 'test-image: %s\n' "$*" >&2; exit 1; }

# --- podman -------------------------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || [ ! -x /usr/sbin/runc ]; then
  [ "$(id -u)" = 0 ] || fail "podman, buildah and runc are missing; install them (apt-get install podman buildah runc)"
  say "installing podman, buildah and runc from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q podman buildah runc >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q podman buildah runc >/dev/null; }
fi
mkdir -p "$work"
# docs/testing.md, "The container image": crun fails on this
# machine's hybrid cgroups and the default ulimits cannot be set, so runc, cgroupfs, no ulimits.
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman_run_flags=(--runtime /usr/sbin/runc --cgroup-manager=cgroupfs --network=host)
say "$(podman --version), $(buildah --version | cut -d' ' -f1-3), $(/usr/sbin/runc --version | head -n1)"

# --- the image ------------------------------------------------------------------------------
say "building the static binary (as deploy/Containerfile's builder stage does)"
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked --quiet -p bq-ingest --features hickory-dns --target "$target"
binary="${CARGO_TARGET_DIR:-$repo/target}/$target/release/bq-ingest"
file "$binary" | grep -q 'static' || fail "$binary is not statically linked: $(file -b "$binary")"

say "building $image from deploy/Containerfile's runtime stage"
rm -rf "$work/context"
mkdir -p "$work/context"
deploy/rootfs.sh "$work/context/rootfs" "$binary"
sed -n '/^FROM scratch AS runtime$/,$p' deploy/Containerfile |
  sed 's#^COPY --from=builder /rootfs/ /$#COPY rootfs/ /#' >"$work/Containerfile.runtime"
grep -q '^COPY rootfs/ /$' "$work/Containerfile.runtime" ||
  fail "deploy/Containerfile's runtime stage no longer copies /rootfs/ from the builder; update this script"
podman rm -f "$container" >/dev/null 2>&1 || true
podman build --quiet -t "$image" -f "$work/Containerfile.runtime" "$work/context" >/dev/null
size="$(podman image inspect "$image" --format '{{.Size}}')"
say "image size: $size bytes ($(python3 -c "print(f'{$size/1e6:.1f}')") MB)"
[ "$size" -lt "$max_bytes" ] || fail "the image is $size bytes, over the $max_bytes target"
user="$(podman image inspect "$image" --format '{{.Config.User}}')"
[ "$user" = "65532:65532" ] || fail "the image's user is '$user', not 65532:65532"
entrypoint="$(podman image inspect "$image" --format '{{json .Config.Entrypoint}} {{json .Config.Cmd}}')"
[ "$entrypoint" = '["bq-ingest"] ["serve"]' ] || fail "entrypoint and command are $entrypoint"

# --- the emulators ----------------------------------------------------------------------------
scripts/dev-stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$DEV_STACK_DIR/env"
project="$GOOGLE_CLOUD_PROJECT"
bq="$BIGQUERY_EMULATOR_HOST/bigquery/v2/projects/$project"
pubsub="http://$PUBSUB_EMULATOR_HOST/v1/projects/$project"
by_name() { printf '%s' "${1//127.0.0.1/$emulators_host}"; }
bq_post() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$bq/$1"; }
count_rows() {
  bq_post queries "{\"query\": \"SELECT COUNT(*) FROM \`$project.$dataset.nation\`\", \"useLegacySql\": false}" |
    python3 -c 'import json,sys; r=json.load(sys.stdin).get("rows") or [{"f":[{"v":"0"}]}]; print(r[0]["f"][0]["v"])'
}
gcs_upload() { # name file
  curl -fsS -X POST --data-binary @"$2" -H 'Content-Type: application/octet-stream' \
    "$STORAGE_EMULATOR_HOST/upload/storage/v1/b/$INGEST_BUCKET/o?uploadType=media&name=$1" >/dev/null
}
cleanup() {
  podman rm -f "$container" >/dev/null 2>&1 || true
  curl -fsS -X DELETE "$pubsub/subscriptions/$subscription" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "dataset $dataset, table nation, $dataset/_config/load.json"
curl -fsS -X DELETE "$bq/datasets/$dataset?deleteContents=true" >/dev/null 2>&1 || true
bq_post datasets "{\"datasetReference\": {\"projectId\": \"$project\", \"datasetId\": \"$dataset\"}}" >/dev/null
bq_post "datasets/$dataset/tables" "$(python3 -c '
import json, sys
print(json.dumps({"tableReference": {"projectId": sys.argv[1], "datasetId": sys.argv[2], "tableId": "nation"},
                  "schema": {"fields": json.load(open(sys.argv[3]))}}))' "$project" "$dataset" testdata/nation_schema.json)" >/dev/null
printf '{"fieldDelimiter": "|"}' >"$work/load.json"
gcs_upload "$dataset/_config/load.json" "$work/load.json"

# --- start to ready ---------------------------------------------------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "container on port $port; emulators at $emulators_host (an /etc/hosts entry, no IP address)"
podman create --name "$container" "${podman_run_flags[@]}" \
  --add-host "$emulators_host:127.0.0.1" \
  -e PORT="$port" -e BQ_PROJECT="$project" -e WAIT_FOR_JOB_SECONDS=60 \
  -e STORAGE_EMULATOR_HOST="$(by_name "$STORAGE_EMULATOR_HOST")" \
  -e BIGQUERY_EMULATOR_HOST="$(by_name "$BIGQUERY_EMULATOR_HOST")" \
  -e PUBSUB_EMULATOR_HOST="$(by_name "$PUBSUB_EMULATOR_HOST")" \
  "$image" >/dev/null
started=$(date +%s%N)
podman start "$container" >/dev/null
ready=""
for _ in $(seq 1 500); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then ready=$(date +%s%N); break; fi
  [ "$(podman inspect -f '{{.State.Running}}' "$container")" = true ] ||
    { podman logs "$container" >&2; fail "the container exited before it was ready"; }
  sleep 0.01
done
[ -n "$ready" ] || { podman logs "$container" >&2; fail "not ready after 5 s"; }
say "start to ready: $(( (ready - started) / 1000000 )) ms (podman start until GET /health answers 200)"

pid="$(podman inspect -f '{{.State.Pid}}' "$container")"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
[ "$uid" = 65532 ] || fail "the service runs as uid $uid, not 65532"
say "runs as uid $uid"

# --- a real push --------------------------------------------------------------------------------
say "push subscription $subscription → http://127.0.0.1:$port/"
curl -fsS -X DELETE "$pubsub/subscriptions/$subscription" >/dev/null 2>&1 || true
curl -fsS -X PUT -H 'Content-Type: application/json' "$pubsub/subscriptions/$subscription" \
  -d "{\"topic\": \"projects/$project/topics/$INGEST_TOPIC\", \"ackDeadlineSeconds\": 120,
       \"pushConfig\": {\"pushEndpoint\": \"http://127.0.0.1:$port/\"}}" >/dev/null

say "uploading $dataset/nation/{part-m-00000,part-m-00001,_SUCCESS}"
gcs_upload "$dataset/nation/part-m-00000" testdata/nation/part-m-00000
gcs_upload "$dataset/nation/part-m-00001" testdata/nation/part-m-00001
gcs_upload "$dataset/nation/_SUCCESS" testdata/nation/_SUCCESS
marker="gs://$INGEST_BUCKET/$dataset/nation/_SUCCESS"
outcome=""
for _ in $(seq 1 600); do
  outcome="$(podman logs "$container" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try: entry = json.loads(line)
    except ValueError: continue
    if entry.get("object") == sys.argv[1] and "outcome" in entry: print(entry["outcome"])' "$marker" | tail -n 1)"
  [ -n "$outcome" ] && break
  sleep 0.1
done
[ "$outcome" = done ] || { podman logs "$container" | tail -n 20 >&2; fail "the pushed marker's outcome is '${outcome:-none}', not done"; }
rows="$(count_rows)"
[ "$rows" = 25 ] || fail "nation has $rows rows after the push, not 25"
say "the pushed notification loaded $rows rows"

# --- SIGTERM ------------------------------------------------------------------------------------
stop_at=$(date +%s%N)
podman kill --signal TERM "$container" >/dev/null
status="$(podman wait "$container")"
stopped=$(date +%s%N)
took=$(( (stopped - stop_at) / 1000000 ))
[ "$status" = 0 ] || { podman logs "$container" | tail -n 20 >&2; fail "exit status $status after SIGTERM"; }
[ "$took" -lt $((stop_budget * 1000)) ] || fail "took $took ms to stop after SIGTERM (budget ${stop_budget} s)"
say "SIGTERM: exit status 0 after $took ms"
say "image test passed"
