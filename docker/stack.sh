#!/usr/bin/env bash
# The rblock-tune stack: an MLflow tracking server on PostgreSQL (with proxied artifacts), a Ray head
# and Ray workers, and the Optuna storage on the same PostgreSQL.
#
# One script for both ways of running it, so they cannot drift apart:
#   - docker/compose.yaml runs one service command per container:
#       stack.sh mlflow-server | ray-head | ray-worker, and stack.sh healthcheck mlflow|ray
#     (PostgreSQL is the official image, initialised with docker/initdb.sql).
#   - `stack.sh up` runs the same commands as processes on this machine (PostgreSQL from the
#     distribution's packages, initialised with the same docker/initdb.sql), `stack.sh down` stops
#     them, `stack.sh status` shows them. Linux only (a Ray node per loopback address).
#
# Run `stack.sh help` for the settings (environment variables) of each command.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

die() { echo "stack.sh: error: $*" >&2; exit 2; }
say() { echo "stack.sh: $*" >&2; }

usage() {
    cat <<'EOF'
usage: stack.sh COMMAND

Service commands (what each compose container runs; they exec and stay in the foreground):
  mlflow-server   mlflow server on MLFLOW_BACKEND_STORE_URI (required, postgresql://USER:PASSWORD@HOST:5432/mlflow),
                  artifacts proxied to MLFLOW_ARTIFACTS_DESTINATION (default ./mlartifacts; s3://BUCKET/PATH with
                  MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY for MinIO), on MLFLOW_HOST
                  (0.0.0.0):MLFLOW_PORT (5000), MLFLOW_WORKERS (2), MLFLOW_ALLOWED_HOSTS (Host headers accepted)
  ray-head        ray start --head on RAY_PORT (6379), dashboard on RAY_DASHBOARD_HOST (127.0.0.1):RAY_DASHBOARD_PORT
                  (8265); RAY_NUM_CPUS, RAY_NUM_GPUS, RAY_NODE_IP optional. Ray's token authentication is on
                  (RAY_AUTH_MODE=token): every node and every driver needs the same RAY_AUTH_TOKEN (or
                  RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token)
  ray-worker      ray start joining RAY_HEAD_ADDRESS (required, HOST:6379); RAY_NUM_CPUS, RAY_NUM_GPUS, RAY_NODE_IP optional
  healthcheck mlflow|ray
                  exit 0 when the MLflow server answers /health, or the Ray cluster at RAY_HEAD_ADDRESS
                  (default 127.0.0.1:RAY_PORT) answers `ray status`

The whole stack as processes on this machine:
  up              PostgreSQL (initdb + docker/initdb.sql), the MLflow server on it, a Ray head and
                  STACK_WORKERS (1) Ray workers; writes STACK_DIR/stack.env and prints the study command.
                  Run again, it starts whatever of these is down (after a crash) and keeps the data
  down [--purge]  stop all of it (--purge also deletes STACK_DIR: databases, artifacts, results)
  status          what is up

  up/down/status settings: STACK_DIR (/tmp/rblock-stack; short: Ray's socket paths live below it),
  STACK_PG_PORT (55432), MLFLOW_PORT (5000), RAY_PORT (6379), RAY_DASHBOARD_PORT (8265),
  STACK_HEAD_IP (127.0.0.2), STACK_WORKER_IP_BASE (127.0.0.1x: workers on 127.0.0.10, .11, ...),
  STACK_WORKERS (1), STACK_CPUS_PER_NODE (1), POSTGRES_USER (rblock), POSTGRES_PASSWORD (random, kept in
  STACK_DIR/stack.env, mode 600)
EOF
}

# ------------------------------------------------------------------------------ service commands
mlflow_server() {
    : "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql://USER:PASSWORD@HOST:5432/mlflow}"
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
    # the store URI (its password) goes by the environment, never the command line that `ps` shows:
    # mlflow server reads MLFLOW_BACKEND_STORE_URI for --backend-store-uri
    export MLFLOW_BACKEND_STORE_URI
    exec mlflow server \
        --serve-artifacts \
        --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-./mlartifacts}" \
        --host "${MLFLOW_HOST:-127.0.0.1}" \
        --port "${MLFLOW_PORT:-5000}" \
        --workers "${MLFLOW_WORKERS:-2}" \
        --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-localhost,localhost:*,127.0.0.1,127.0.0.1:*}"
}

ray_resources() {
    local args=()
    [[ -n "${RAY_NUM_CPUS:-}" ]] && args+=(--num-cpus "$RAY_NUM_CPUS")
    [[ -n "${RAY_NUM_GPUS:-}" ]] && args+=(--num-gpus "$RAY_NUM_GPUS")
    [[ -n "${RAY_NODE_IP:-}" ]] && args+=(--node-ip-address "$RAY_NODE_IP")
    echo "${args[@]+"${args[@]}"}"
}

ray_auth() {  # Ray's token authentication, on by default: the same token on every node and client
    export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
}

ray_head() {
    ray_auth
    # shellcheck disable=SC2046  # word splitting of the option list is intended
    exec ray start --head --block \
        --port "${RAY_PORT:-6379}" \
        --dashboard-host "${RAY_DASHBOARD_HOST:-127.0.0.1}" \
        --dashboard-port "${RAY_DASHBOARD_PORT:-8265}" \
        --disable-usage-stats \
        $(ray_resources)
}

ray_worker() {
    : "${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS to the head node, e.g. ray-head:6379}"
    ray_auth
    # shellcheck disable=SC2046
    exec ray start --block --address "$RAY_HEAD_ADDRESS" --disable-usage-stats $(ray_resources)
}

healthcheck() {
    case "${1:-}" in
        mlflow)
            python - "${MLFLOW_PORT:-5000}" <<'EOF'
import sys
import urllib.request

with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
            ;;
        ray) ray_auth && ray status --address "${RAY_HEAD_ADDRESS:-127.0.0.1:${RAY_PORT:-6379}}" >/dev/null ;;
        *) die "healthcheck needs mlflow or ray" ;;
    esac
}

# ------------------------------------------------------------------- the stack as local processes
STACK_DIR="${STACK_DIR:-/tmp/rblock-stack}"
PG_PORT="${STACK_PG_PORT:-55432}"
HEAD_IP="${STACK_HEAD_IP:-127.0.0.2}"
WORKER_IP_BASE="${STACK_WORKER_IP_BASE:-127.0.0.1}"
MARK="RBLOCK_STACK_MARK=$STACK_DIR"  # in the environment of every process `up` starts

pg_bin() {
    local name="$1" found
    found="$(command -v "$name" || true)"
    [[ -z "$found" ]] && found="$(ls /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$found" ]] || die "PostgreSQL's $name is not installed: apt-get install postgresql (Debian/Ubuntu)"
    echo "$found"
}

as_pg() {  # PostgreSQL refuses to run as root: run its server commands as the postgres user then
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local seconds="$1" what="$2"
    shift 2
    local stop=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < stop)) || die "$what did not come up within ${seconds}s (logs in $STACK_DIR/logs)"
        sleep 0.5
    done
}

start_bg() {  # start_bg NAME VAR=VALUE... : run `stack.sh NAME` detached, logging to STACK_DIR/logs
    local name="$1"
    shift
    setsid env "$MARK" RAY_TMPDIR="$STACK_DIR/ray" "$@" "$SELF" "$name" \
        >>"$STACK_DIR/logs/$name${LOG_SUFFIX:-}.log" 2>&1 </dev/null &
    echo $! >"$STACK_DIR/run/$name${LOG_SUFFIX:-}.pid"
}

running() {  # running NAME: the process `start_bg NAME` started is alive
    local pid
    pid="$(cat "$STACK_DIR/run/$1.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] && { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "$MARK"
}

ray_nodes() {  # number of alive nodes in the cluster at $1
    [[ -s "$STACK_DIR/ray_auth_token" ]] && export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STACK_DIR/ray_auth_token"
    { ray status --address "$1" 2>/dev/null || true; } | awk '/^Active:/{on=1; next} /^Pending:/{on=0} on && /node_/{n++} END{print n+0}'
}

stack_up() {
    command -v mlflow >/dev/null || die "mlflow is not on PATH: activate the project's environment (.venv)"
    command -v ray >/dev/null || die "ray is not on PATH: activate the project's environment (.venv)"
    local workers="${STACK_WORKERS:-1}" cpus="${STACK_CPUS_PER_NODE:-1}"
    local mlflow_port="${MLFLOW_PORT:-5000}" ray_port="${RAY_PORT:-6379}"
    local user="${POSTGRES_USER:-rblock}" password
    mkdir -p "$STACK_DIR/logs" "$STACK_DIR/results" "$STACK_DIR/artifacts" "$STACK_DIR/ray" "$STACK_DIR/run"
    chmod 700 "$STACK_DIR"  # its databases, artifacts, results and secrets: this user's only
    # PostgreSQL refuses to run as root: the postgres user then owns the folder (root reads it anyway)
    if [[ "$(id -u)" == 0 ]]; then chown postgres "$STACK_DIR"; fi
    if [[ ! -s "$STACK_DIR/ray_auth_token" ]]; then  # this stack's Ray token (Ray's token authentication)
        (umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' >"$STACK_DIR/ray_auth_token")
    fi
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STACK_DIR/ray_auth_token"
    if [[ -f "$STACK_DIR/stack.env" ]]; then  # a restart keeps its password, databases and results
        password="$(sed -n 's/^PGPASSWORD=//p' "$STACK_DIR/stack.env")"
    else
        password="${POSTGRES_PASSWORD:-$(python -c 'import secrets; print(secrets.token_hex(16))')}"
    fi

    # PostgreSQL: the distribution's server, its data in STACK_DIR/pg, on 127.0.0.1:PG_PORT
    if [[ ! -s "$STACK_DIR/pg/PG_VERSION" ]]; then
        mkdir -p "$STACK_DIR/pg"
        local pwfile="$STACK_DIR/pg.pw"
        (umask 077 && printf '%s\n' "$password" >"$pwfile")
        if [[ "$(id -u)" == 0 ]]; then chown postgres "$STACK_DIR/pg" "$pwfile"; fi
        as_pg "$(pg_bin initdb)" -D "$STACK_DIR/pg" -U "$user" --pwfile="$pwfile" \
            --auth-host=scram-sha-256 --auth-local=scram-sha-256 >"$STACK_DIR/logs/initdb.log" 2>&1 \
            || die "initdb failed (see $STACK_DIR/logs/initdb.log)"
        rm -f "$pwfile"
    fi
    if [[ "$(id -u)" == 0 ]]; then chown postgres "$STACK_DIR/logs"; touch "$STACK_DIR/logs/postgres.log"; chown postgres "$STACK_DIR/logs/postgres.log"; fi
    if ! "$(pg_bin pg_isready)" -h 127.0.0.1 -p "$PG_PORT" -q; then  # `up` again after a crash starts what is down
        as_pg "$(pg_bin pg_ctl)" -D "$STACK_DIR/pg" -l "$STACK_DIR/logs/postgres.log" -w -t 60 \
            -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $STACK_DIR/pg" start >/dev/null \
            || die "PostgreSQL did not start (see $STACK_DIR/logs/postgres.log)"
    fi
    # the password goes by the environment (PGPASSWORD, MLFLOW_BACKEND_STORE_URI), never by a command
    # line, which every local user sees in `ps`
    PGPASSWORD="$password" "$(pg_bin psql)" "postgresql://$user@127.0.0.1:$PG_PORT/postgres" -q -v ON_ERROR_STOP=1 \
        -f "$HERE/initdb.sql" >"$STACK_DIR/logs/initdb-sql.log" 2>&1 \
        || die "docker/initdb.sql failed (see $STACK_DIR/logs/initdb-sql.log)"

    # the MLflow server on PostgreSQL, artifacts proxied to STACK_DIR/artifacts (or MLFLOW_ARTIFACTS_DESTINATION)
    running mlflow-server \
        || MLFLOW_BACKEND_STORE_URI="postgresql://$user:$password@127.0.0.1:$PG_PORT/mlflow" start_bg mlflow-server \
            MLFLOW_HOST=127.0.0.1 MLFLOW_PORT="$mlflow_port" MLFLOW_WORKERS=1 \
            MLFLOW_ARTIFACTS_DESTINATION="${MLFLOW_ARTIFACTS_DESTINATION:-$STACK_DIR/artifacts}"
    wait_for 120 "the MLflow server" env MLFLOW_PORT="$mlflow_port" "$SELF" healthcheck mlflow

    # a Ray head and STACK_WORKERS workers, one loopback address each
    local new_head=0 i
    if ! running ray-head; then
        # workers of a lost head cannot join a new one, and their leftovers get in its way: stop them first
        for ((i = 0; i < workers; i++)); do kill_node "$WORKER_IP_BASE$i"; done
        kill_node "$HEAD_IP"
        start_bg ray-head RAY_PORT="$ray_port" RAY_NODE_IP="$HEAD_IP" RAY_NUM_CPUS="$cpus" RAY_NUM_GPUS=0 \
            RAY_DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"
        new_head=1
    fi
    wait_for 120 "the Ray head" env RAY_HEAD_ADDRESS="$HEAD_IP:$ray_port" "$SELF" healthcheck ray
    for ((i = 0; i < workers; i++)); do
        if ((!new_head)) && running "ray-worker-$i"; then continue; fi
        LOG_SUFFIX="-$i" start_bg ray-worker RAY_HEAD_ADDRESS="$HEAD_IP:$ray_port" \
            RAY_NODE_IP="$WORKER_IP_BASE$i" RAY_NUM_CPUS="$cpus"
    done
    local stop=$((SECONDS + 120))
    until [[ "$(ray_nodes "$HEAD_IP:$ray_port")" -ge $((workers + 1)) ]]; do
        ((SECONDS < stop)) || die "the Ray workers did not join within 120s (logs in $STACK_DIR/logs)"
        sleep 1
    done

    (umask 077 && cat >"$STACK_DIR/stack.env" <<EOF
# written by stack.sh up (mode 600: it holds the database password and points at the Ray token);
# set -a; . THIS_FILE; set +a; then: rblock-tune study run SPEC --address \$RAY_ADDRESS
# (the Optuna URL carries no password: PostgreSQL's client reads PGPASSWORD, so study.json holds none)
RAY_ADDRESS=$HEAD_IP:$ray_port
RAY_AUTH_MODE=token
RAY_AUTH_TOKEN_PATH=$STACK_DIR/ray_auth_token
RBLOCK_STORAGE=$STACK_DIR/results
RBLOCK_TRACKING_URI=http://127.0.0.1:$mlflow_port
RBLOCK_OPTUNA_STORAGE=postgresql://$user@127.0.0.1:$PG_PORT/optuna
PGPASSWORD=$password
EOF
    )
    say "up: PostgreSQL 127.0.0.1:$PG_PORT, MLflow http://127.0.0.1:$mlflow_port, Ray $HEAD_IP:$ray_port" \
        "(1 head + $workers worker(s)), results in $STACK_DIR/results"
    echo "set -a; . $STACK_DIR/stack.env; set +a"
    echo "rblock-tune study run SPEC.yaml --address \$RAY_ADDRESS  # storage, tracking and Optuna storage from stack.env"
}

stack_pids() {  # processes started by `up` (they carry MARK in their environment), not this one
    local e pid
    for e in /proc/[0-9]*/environ; do
        pid="${e#/proc/}"
        pid="${pid%/environ}"
        [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
        if { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -qxF "$MARK"; then echo "$pid"; fi
    done
}

kill_node() {  # kill_node IP: stop the Ray node `up` started on that address (SIGTERM, then SIGKILL)
    local pid pids=() e
    for e in /proc/[0-9]*/environ; do
        pid="${e#/proc/}"
        pid="${pid%/environ}"
        if { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -xF -e "$MARK" -e "RAY_NODE_IP=$1" | wc -l | grep -qx 2; then
            pids+=("$pid")
        fi
    done
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 3
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

stack_down() {
    local pids
    pids="$(stack_pids)"
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true  # `ray start --block` stops its node on SIGTERM
        local stop=$((SECONDS + 15))
        while [[ -n "$(stack_pids)" ]] && ((SECONDS < stop)); do sleep 0.5; done
        pids="$(stack_pids)"
        # shellcheck disable=SC2086
        [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    fi
    if [[ -s "$STACK_DIR/pg/postmaster.pid" ]]; then
        as_pg "$(pg_bin pg_ctl)" -D "$STACK_DIR/pg" -m fast -w stop >/dev/null || true
    fi
    if [[ "${1:-}" == "--purge" ]]; then
        rm -rf "$STACK_DIR"
        say "down: stopped, and $STACK_DIR deleted"
    else
        say "down: stopped; data kept in $STACK_DIR (stack.sh down --purge deletes it)"
    fi
}

stack_status() {
    local ok=0 ray_port="${RAY_PORT:-6379}"
    if [[ -s "$STACK_DIR/pg/postmaster.pid" ]] && "$(pg_bin pg_isready)" -h 127.0.0.1 -p "$PG_PORT" -q; then
        echo "postgres: up on 127.0.0.1:$PG_PORT"
    else
        echo "postgres: down"; ok=1
    fi
    if MLFLOW_PORT="${MLFLOW_PORT:-5000}" healthcheck mlflow 2>/dev/null; then
        echo "mlflow: up on http://127.0.0.1:${MLFLOW_PORT:-5000}"
    else
        echo "mlflow: down"; ok=1
    fi
    local nodes
    nodes="$(ray_nodes "$HEAD_IP:$ray_port")"
    if [[ "$nodes" -gt 0 ]]; then echo "ray: $nodes node(s) at $HEAD_IP:$ray_port"; else echo "ray: down"; ok=1; fi
    return $ok
}

case "${1:-help}" in
    mlflow-server) mlflow_server ;;
    ray-head) ray_head ;;
    ray-worker) ray_worker ;;
    healthcheck) healthcheck "${2:-}" ;;
    up) stack_up ;;
    down) stack_down "${2:-}" ;;
    status) stack_status ;;
    help | -h | --help) usage ;;
    *) usage >&2; die "unknown command '$1'" ;;
esac
