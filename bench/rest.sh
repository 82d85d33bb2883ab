#!/usr/bin/env bash
# REST benchmark: wrk with a valid Bearer token against GET /api/companies/{id}
# and POST /api/companies on gtmd, and, in the same run against the same
# database, pgbench running the SQL those routes run (same statement, same
# concurrency).  The ratio says what the server adds over Postgres itself.
# Runs inside a throwaway cluster (pg_virtualenv) and leaves nothing behind.
#
# Environment (optional): BENCH_DURATION [10] seconds per run, BENCH_CONNS [64],
# GTM_PG_POOL_SIZE [8] connections gtmd keeps, GTMD_BIN (default: build/gtmd, rebuilt).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { printf 'bench/rest.sh: %s\n' "$*" >&2; exit 1; }
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-64}
[[ $DURATION =~ ^[0-9]+$ && $CONNS =~ ^[0-9]+$ ]] || die "BENCH_DURATION and BENCH_CONNS must be whole numbers"

. bench/lib.sh
bench_in_cluster "$0" "$@"

GTMD=${GTMD_BIN:-build/gtmd}
bench_scratch rest

DB=gtm_bench
bench_database "$DB"

bench_fake_stack

PORT=18090
env $STACK_ENV GTM_LISTEN=127.0.0.1:$PORT GTM_ADMIN_LISTEN=off GTM_WORKERS=1 GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-8} \
    "$GTMD" serve 2>"$TMP/gtmd.log" &
GTMD_PID=$!
PIDS+=($GTMD_PID)
bench_wait_gtmd "$PORT"

BODY='{"company_name":"Acme","company_url":"https://acme.example","description":"Anvils.","capabilities":["Anvils: heavy"],"objections":["Price"],"metadata":{}}'
CID=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d "$BODY" "http://127.0.0.1:$PORT/api/companies" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')

cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

run_wrk() { # NAME ARGS...: prints "req/s p99_ms"
    local name=$1
    shift
    wrk -t2 -c"$CONNS" -d2s "$@" >/dev/null 2>&1 || true   # warm-up
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$@" >"$TMP/$name.wrk" 2>&1
    "$PY" - "$TMP/$name.wrk" <<'PYEOF'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print("%.0f %.2f %s" % (rps, p99, bad.group(1) if bad else "0"))
PYEOF
}

run_pgbench() { # NAME SCRIPT: prints "tps p99_ms"
    local name=$1
    printf '%s\n' "$2" >"$TMP/$name.sql"
    pgbench -n -M prepared -c "$CONNS" -j 2 -T 2 -f "$TMP/$name.sql" -D uid="$USER_ID" -D cid="$CID" "$DB" >/dev/null 2>&1 || true
    pgbench -n -M prepared -c "$CONNS" -j 2 -T "$DURATION" -f "$TMP/$name.sql" -D uid="$USER_ID" -D cid="$CID" \
        -l --log-prefix="$TMP/$name" "$DB" >"$TMP/$name.out" 2>&1
    "$PY" - "$TMP/$name.out" "$TMP" "$name" <<'PYEOF'
import glob, re, sys
t = open(sys.argv[1]).read()
tps = float(re.search(r"tps = ([\d.]+)", t).group(1))
lat = []
for f in glob.glob("%s/%s.*" % (sys.argv[2], sys.argv[3])):
    if f.endswith((".sql", ".out")):
        continue
    for line in open(f):
        parts = line.split()
        if len(parts) > 2:
            lat.append(int(parts[2]) / 1000.0)
lat.sort()
print("%.0f %.2f" % (tps, lat[int(len(lat) * 0.99)] if lat else 0))
PYEOF
}

SELECT_SQL="SELECT json_build_object('name',x.name,'url',x.url,'data',x.data,'id',x.id,'user_id',x.user_id,'created_at',gtm_ts(x.created_at),'updated_at',gtm_ts(x.updated_at))::text FROM companies x WHERE x.id = :cid::uuid AND x.user_id = :uid::uuid;"
INSERT_SQL="WITH u AS (INSERT INTO users (id, created_at, role) VALUES (:uid::uuid, gtm_utcnow(), 'user') ON CONFLICT (id) DO NOTHING), x AS (INSERT INTO companies (id, user_id, name, url, data, created_at, updated_at) VALUES (gen_random_uuid(), :uid::uuid, 'Acme', 'https://acme.example', '$BODY'::jsonb, gtm_utcnow(), gtm_utcnow()) RETURNING *) SELECT json_build_object('name',x.name,'url',x.url,'data',x.data,'id',x.id,'user_id',x.user_id,'created_at',gtm_ts(x.created_at),'updated_at',gtm_ts(x.updated_at))::text FROM x;"

msg "GET /api/companies/{id}: wrk -t2 -c$CONNS -d${DURATION}s vs pgbench -c$CONNS -j2 -M prepared"
read -r G_RPS G_P99 G_BAD < <(run_wrk get -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/companies/$CID")
read -r S_TPS S_P99 < <(run_pgbench select "$SELECT_SQL")
msg "POST /api/companies"
read -r P_RPS P_P99 P_BAD < <(run_wrk post -s "$TMP/post.lua" "http://127.0.0.1:$PORT/api/companies")
read -r I_TPS I_P99 < <(run_pgbench insert "$INSERT_SQL")
GTMD_RSS=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$GTMD_PID/status)

echo
printf '%-28s %10s %9s %8s\n' "run" "per second" "p99 ms" "errors"
printf '%-28s %10s %9s %8s\n' "gtmd GET /api/companies/{id}" "$G_RPS" "$G_P99" "$G_BAD"
printf '%-28s %10s %9s %8s\n' "pgbench the same SELECT" "$S_TPS" "$S_P99" "-"
printf '%-28s %10s %9s %8s\n' "gtmd POST /api/companies" "$P_RPS" "$P_P99" "$P_BAD"
printf '%-28s %10s %9s %8s\n' "pgbench the same INSERT" "$I_TPS" "$I_P99" "-"
"$PY" -c "
import sys
g, s, p, i = map(float, sys.argv[1:5])
print('gtmd/pgbench: GET %.2fx, POST %.2fx (goal: at least 0.5x)' % (g / s, p / i))" "$G_RPS" "$S_TPS" "$P_RPS" "$I_TPS"
echo "gtmd peak RSS: ${GTMD_RSS} MiB; one process, GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-8}; $(nproc) CPUs shared by all"
