#!/usr/bin/env bash
# Start a two-replica rcmu deployment on this machine without Docker, and check it: one PostgreSQL
# server from the machine's binaries, one `chroma run` server, a model server (the fake
# OpenAI-compatible one, or yours: set RCMU_BASE_URL), two `rcmu mcp --http` replicas with empty
# RCMU_HOMEs of their own; then deploy/check.py teaches through the first and asks through the second.
#
#   deploy/check.sh           start, check, stop (exit status 0 when the replicas share one memory)
#   deploy/check.sh --keep    start, check, and keep serving until Ctrl-C (URLs and token printed)
#
# Needs: the rcmu package installed (pip install -e .), PostgreSQL's server binaries
# (apt-get install postgresql) and loopback ports. Everything runs under one temp folder, removed on exit.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
bin=$(dirname "$(command -v "$python")")
work=$(mktemp -d /tmp/rcmu-deploy.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
wait_for() {  # wait_for NAME LOG COMMAND...: until COMMAND succeeds (60 s)
    local name=$1 log=$2
    shift 2
    for _ in $(seq 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "check failed: $name did not start — its log, $log:" >&2
    tail -20 "$log" >&2
    exit 1
}

# 1. PostgreSQL: what RCMU_DATABASE_URL names (LangGraph Server's DATABASE_URI would use the same server)
pg_server=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -1)
if [ -z "$pg_server" ]; then
    echo "check failed: no PostgreSQL server binaries in /usr/lib/postgresql — apt-get install postgresql" >&2
    exit 1
fi
pg_bin=$(dirname "$pg_server")
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_postgres "$pg_bin/initdb" -D "$work/pg/db" -U postgres --auth=trust >"$work/initdb.log" 2>&1
pg_port=$(free_port)
as_postgres "$pg_bin/postgres" -D "$work/pg/db" -p "$pg_port" -k "$work/pg" -c listen_addresses=127.0.0.1 \
    >"$work/postgres.log" 2>&1 &
pids+=($!)
wait_for PostgreSQL "$work/postgres.log" "$pg_bin/pg_isready" -h 127.0.0.1 -p "$pg_port"
as_postgres "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres rcmu
export RCMU_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/rcmu"

# 2. Chroma server: what RCMU_CHROMA_URL names
chroma_port=$(free_port)
ANONYMIZED_TELEMETRY=False "$bin/chroma" run --path "$work/chroma" --host 127.0.0.1 --port "$chroma_port" \
    >"$work/chroma.log" 2>&1 &
pids+=($!)
export RCMU_CHROMA_URL="http://127.0.0.1:$chroma_port"
wait_for Chroma "$work/chroma.log" "$python" -c "import urllib.request; urllib.request.urlopen('$RCMU_CHROMA_URL/api/v2/heartbeat')"

# 3. The model server: yours (RCMU_BASE_URL, e.g. vLLM's http://host:8000/v1), else the fake one
if [ -z "${RCMU_BASE_URL:-}" ]; then
    model_port=$(free_port)
    "$python" -m rcmu_agent.testing --port "$model_port" --text "Barack Obama [1] is in the photo." \
        >"$work/model.log" 2>&1 &
    pids+=($!)
    export RCMU_BASE_URL="http://127.0.0.1:$model_port/v1"
    wait_for "the model server" "$work/model.log" grep -q http "$work/model.log"
fi
export RCMU_BACKEND=openai RCMU_MODEL="${RCMU_MODEL:-weihongliang/RC-Qwen2VL-2b}"
# no detector or image-embedding download on a machine without a model hub (faces need neither)
export RCMU_OBJECT_DETECTOR="${RCMU_OBJECT_DETECTOR-}" RCMU_IMAGE_EMBEDDING_MODEL="${RCMU_IMAGE_EMBEDDING_MODEL-}"
export ANONYMIZED_TELEMETRY=False RCMU_ALLOWED_ROOTS="$repo/tests/data"

# 4. Two replicas, each with an empty home of its own, one tokens file (alice)
token="check-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "{\"$token\": \"alice\"}" >"$work/tokens.json"
urls=()
for replica in a b; do
    port=$(free_port)
    RCMU_HOME="$work/home-$replica" "$bin/rcmu" mcp --http "127.0.0.1:$port" --tokens-file "$work/tokens.json" \
        >"$work/replica-$replica.log" 2>&1 &
    pids+=($!)
    urls+=("http://127.0.0.1:$port/mcp")
done
for i in 0 1; do
    wait_for "replica $i" "$work/replica-$([ $i = 0 ] && echo a || echo b).log" \
        "$python" -c "import httpx; httpx.get('${urls[$i]}', timeout=1)"
done
echo "services: PostgreSQL $RCMU_DATABASE_URL, Chroma $RCMU_CHROMA_URL, model $RCMU_BASE_URL"
echo "replicas: ${urls[0]} ${urls[1]} (RCMU_HOME $work/home-a and $work/home-b)"

# 5. The check: teach through the first, ask through the second
"$python" "$repo/deploy/check.py" --first "${urls[0]}" --second "${urls[1]}" --token "$token" \
    --reference "$repo/tests/data/obama.jpg" --scene "$repo/tests/data/two_people.jpg"

if [ "${1:-}" = "--keep" ]; then
    echo "serving until Ctrl-C; the bearer token is $token"
    wait
fi
