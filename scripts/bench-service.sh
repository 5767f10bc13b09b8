#!/usr/bin/env bash
# Measures the bq-ingest service: start to ready, idle RSS, RSS while handling 10,000 no-op
# notifications, and no-op notifications/s over HTTP with the server pinned to one core.
# Needs no emulator (a no-op notification touches neither GCS nor BigQuery, and start-up makes
# no request). Installs wrk from Debian when missing. Prints a Markdown table.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

cargo build --release -p bq-ingest --quiet
bin="${CARGO_TARGET_DIR:-$repo/target}/release/bq-ingest"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

export BQ_PROJECT=bench-project STORAGE_EMULATOR_HOST=http://127.0.0.1:9 BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9
export BQ_LOAD_STATE_TABLE=none RUST_LOG=warn TOKIO_WORKER_THREADS=1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# A realistic no-op: the push envelope of a data file's OBJECT_FINALIZE.
python3 - "$work/body.json" <<'PY'
import base64, json, sys
obj = {"kind": "storage#object", "id": "bucket/ds/t/$2020010203/part-m-00042#1700000000000000",
       "name": "ds/t/$2020010203/part-m-00042", "bucket": "bucket", "generation": "1700000000000000",
       "metageneration": "1", "contentType": "application/octet-stream",
       "timeCreated": "2026-11-24T06:43:30.070284Z", "updated": "2026-11-24T06:43:30.070288Z",
       "storageClass": "STANDARD", "size": "104857600", "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==", "crc32c": "AAAAAA=="}
env = {"message": {"data": base64.b64encode(json.dumps(obj).encode()).decode(),
       "attributes": {"bucketId": "bucket", "objectId": obj["name"], "objectGeneration": obj["generation"],
                      "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1", "eventTime": "2026-11-24T06:43:30Z"},
       "messageId": "1", "publishTime": "2026-11-24T06:43:30.090Z"},
       "subscription": "projects/bench-project/subscriptions/bq-ingest-push"}
open(sys.argv[1], "w").write(json.dumps(env))
PY
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "r"); wrk.body = f:read("*a"); f:close()
LUA

# Start to ready: from exec to the first successful /healthz, best of 10.
ready_ms=$(python3 - "$bin" "$port" <<'PY'
import socket, subprocess, sys, time
best = None
for _ in range(10):
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.argv[1], "serve", "--port", sys.argv[2], "--host", "127.0.0.1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=0.05)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            time.sleep(0.0005)
    dt = (time.perf_counter() - t0) * 1000
    best = dt if best is None else min(best, dt)
    p.terminate(); p.wait()
print(f"{best:.1f}")
PY
)

taskset -c 0 "$bin" serve --port "$port" --host 127.0.0.1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.02; done
rss() { awk "/^$1:/ {print int(\$2/1024*10)/10}" "/proc/$pid/status"; }
idle_rss=$(rss VmRSS)

# 10,000 no-op notifications, then the peak RSS.
python3 - "$port" "$work/body.json" <<'PY'
import http.client, sys
body = open(sys.argv[2], "rb").read()
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(10_000):
    c.request("POST", "/", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
rss_10k=$(rss VmHWM)

# Throughput: wrk on the other core, 4 connections, 10 s.
wrk_out=$(taskset -c 1 wrk -t1 -c4 -d10s -s "$work/post.lua" "http://127.0.0.1:$port/" 2>&1)
rps=$(echo "$wrk_out" | awk '/Requests\/sec/ {print int($2)}')
non2xx=$(echo "$wrk_out" | awk '/Non-2xx/ {print $NF}')
peak_rss=$(rss VmHWM)
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

echo "| figure | value |"
echo "| --- | --- |"
echo "| serve: start to ready (exec → first 200 on /healthz, best of 10) | ${ready_ms} ms |"
echo "| serve: idle RSS | ${idle_rss} MiB |"
echo "| serve: peak RSS after 10,000 no-op notifications | ${rss_10k} MiB |"
echo "| serve: no-op notifications/s over HTTP, server on 1 core (wrk -c4, 10 s) | ${rps} /s |"
echo "| serve: peak RSS after the wrk run | ${peak_rss} MiB |"
[ -z "$non2xx" ] || echo "| non-2xx answers during the wrk run | ${non2xx} |"
