#!/usr/bin/env bash
# Soak run: one gtmd process under mixed traffic for BENCH_SOAK_SECONDS (600)
# with a module reload every 30 s (company.so alternating between its two
# builds), sampling the process's resident memory every 10 s.  Traffic, from
# two wrk clients at once: authenticated CRUD (create, read, list, update,
# delete companies; every created row deleted again by the same connection)
# and generation (POST /demo/companies/generate-ai against a fake OpenAI,
# every body different).  Prints the memory samples, the growth after the
# first minute and its slope; the goal is flat memory: what the first minute
# reached (pools, caches, arenas) is what it keeps.
# Runs inside a throwaway cluster (pg_virtualenv) and leaves nothing behind.
#
# Environment (optional): BENCH_SOAK_SECONDS [600], BENCH_CONNS [32] CRUD
# connections, BENCH_GEN_CONNS [8], BENCH_LATENCY_MS [20], GTMD_BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { printf 'bench/soak.sh: %s\n' "$*" >&2; exit 1; }
SECS=${BENCH_SOAK_SECONDS:-600}
CONNS=${BENCH_CONNS:-32}
GEN_CONNS=${BENCH_GEN_CONNS:-8}
LATENCY=${BENCH_LATENCY_MS:-20}
for v in "$SECS" "$CONNS" "$GEN_CONNS" "$LATENCY"; do
    [[ $v =~ ^[0-9]+$ ]] || die "BENCH_SOAK_SECONDS, BENCH_CONNS, BENCH_GEN_CONNS and BENCH_LATENCY_MS must be whole numbers"
done
((SECS >= 120)) || die "BENCH_SOAK_SECONDS must be at least 120 (the first minute is the warm-up)"

unset GTMD_BIN   # it swaps the modules of build/, so it runs build/gtmd
. bench/lib.sh
bench_in_cluster "$0" "$@"

GTMD=build/gtmd
bench_scratch soak
bench_database gtm_soak
bench_fake_stack

bench_fake_openai 18096 "$LATENCY" '{"demo": {"company_generate": 1000000000}}'

MODDIR="$TMP/modules"
mkdir "$MODDIR"
cp build/modules/*.so "$MODDIR/"
PORT=18094
ADMIN=18095
env $STACK_ENV GTM_LISTEN=127.0.0.1:$PORT GTM_ADMIN_LISTEN=127.0.0.1:$ADMIN GTM_WORKERS=1 \
    GTM_PG_POOL_SIZE=8 GTM_MODULE_DIR="$MODDIR" GTM_LOG_LEVEL=warn $OPENAI_ENV \
    "$GTMD" serve 2>"$TMP/gtmd.log" &
GTMD_PID=$!
PIDS+=($GTMD_PID)
bench_wait_gtmd "$PORT"

# CRUD: each connection (one wrk thread each, so the script state is per
# connection) cycles create -> read -> list -> update -> delete of
# its own row, so the table stays small and every path runs.
cat >"$TMP/crud.lua" <<'LUA'
local body = '{"company_name":"Soak","company_url":"https://soak.example","description":"d",'
          .. '"capabilities":["c"],"objections":["o"],"metadata":{}}'
local step, id = 0, nil
counts = {}
request = function()
    -- a table given to wrk.format replaces the -H headers: carry them over
    local h = {["Content-Type"] = "application/json"}
    for k, v in pairs(wrk.headers) do h[k] = v end
    if step == 0 or not id then
        return wrk.format("POST", "/api/companies", h, body)
    elseif step == 1 then
        return wrk.format("GET", "/api/companies/" .. id)
    elseif step == 2 then
        return wrk.format("GET", "/api/companies?limit=5")
    elseif step == 3 then
        return wrk.format("PUT", "/api/companies/" .. id, h, '{"name":"Soak 2"}')
    else
        return wrk.format("DELETE", "/api/companies/" .. id)
    end
end
response = function(status, headers, b)
    counts[status] = (counts[status] or 0) + 1
    if step == 0 then
        id = status == 201 and string.match(b, '"id" ?: ?"([0-9a-f-]+)"') or nil
        step = id and 1 or 0
    else
        step = (step + 1) % 5
    end
end
LUA
cat >"$TMP/gen.lua" <<LUA
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
local n = 0
request = function()
    n = n + 1
    local body = '{"website_url":"http://127.0.0.1:$FAKE_PORT/","user_inputted_context":"soak ' .. tid .. '-' .. n .. '"}'
    return wrk.format("POST", "/demo/companies/generate-ai", {["Content-Type"] = "application/json"}, body)
end
LUA

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$GTMD_PID/status"; }

msg "soak: ${SECS}s of CRUD (wrk -c$CONNS) and generation (wrk -c$GEN_CONNS), a reload every 30 s, RSS every 10 s"
wrk -t"$CONNS" -c"$CONNS" -d"${SECS}s" --latency -s "$TMP/crud.lua" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT" >"$TMP/crud.wrk" 2>&1 &
W1=$!
wrk -t1 -c"$GEN_CONNS" -d"${SECS}s" --timeout 10s --latency -s "$TMP/gen.lua" "http://127.0.0.1:$PORT" \
    >"$TMP/gen.wrk" 2>&1 &
W2=$!
PIDS+=($W1 $W2)
: >"$TMP/rss.csv"
START=$SECONDS
reloads=0
next_reload=30
while kill -0 "$W1" 2>/dev/null; do
    el=$((SECONDS - START))
    printf '%d %s\n' "$el" "$(rss_kib)" >>"$TMP/rss.csv"
    if ((el >= next_reload && el < SECS)); then
        next_reload=$((next_reload + 30))
        if ((reloads % 2 == 0)); then src=build/modules/alt/company.so; else src=build/modules/company.so; fi
        cp "$src" "$MODDIR/.company.so.new" && mv "$MODDIR/.company.so.new" "$MODDIR/company.so"
        GTM_ADMIN_LISTEN=127.0.0.1:$ADMIN "$GTMD" reload >/dev/null </dev/null || die "gtmd reload failed"
        reloads=$((reloads + 1))
    fi
    sleep 10
done
wait "$W1" "$W2" || true
printf '%d %s\n' "$((SECONDS - START))" "$(rss_kib)" >>"$TMP/rss.csv"

curl -sf "http://127.0.0.1:$ADMIN/metrics" >"$TMP/metrics.txt" || die "no /metrics"
"$PY" - "$TMP/rss.csv" "$TMP/crud.wrk" "$TMP/gen.wrk" "$TMP/gtmd.log" "$reloads" "$TMP/metrics.txt" <<'PYEOF'
import json, re, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
def wrk(path):
    t = open(path).read()
    n = int(re.search(r"(\d+) requests in", t).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    return n, (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
crud, gen = wrk(sys.argv[2]), wrk(sys.argv[3])
swaps = int(float(re.search(r'gtm_module_reloads_total\{outcome="ok"\} (\S+)', open(sys.argv[6]).read()).group(1)))
errors = sum('"level":"error"' in l for l in open(sys.argv[4]))
after = [(t, k) for t, k in rows if t >= 60]
base, end, peak = after[0][1], after[-1][1], max(k for _, k in after)
n = len(after)
mt = sum(t for t, _ in after) / n
mk = sum(k for _, k in after) / n
slope = sum((t - mt) * (k - mk) for t, k in after) / max(1e-9, sum((t - mt) ** 2 for t, _ in after)) * 60
print()
print("rss KiB by second: " + " ".join("%d:%d" % r for r in rows))
print("requests   CRUD %d (%d failed), generate %d (%d failed); %d reloads asked, %d swaps done; %d error lines"
      % (crud[0], crud[1], gen[0], gen[1], int(sys.argv[5]), swaps, errors))
print("memory     first sample %.1f MiB; after the first minute %.1f MiB, at the end %.1f MiB, peak %.1f MiB"
      % (rows[0][1] / 1024, base / 1024, end / 1024, peak / 1024))
print("growth     %+.1f MiB after the first minute; slope %+.1f KiB/min (goal: flat, under 1 MiB over the run)"
      % ((end - base) / 1024, slope))
PYEOF
echo "one process, GTM_PG_POOL_SIZE=8; $(nproc) CPUs shared by wrk, gtmd, the fake provider and Postgres"
