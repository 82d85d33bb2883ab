#!/usr/bin/env bash
# Hot swap benchmark: two wrk clients at once, one on a CRUD route
# (GET /api/companies/{id} with a valid Bearer token) and one on a generate
# route (POST /demo/companies/generate-ai against a fake OpenAI), first
# without swaps, then while the company module (which serves both) is swapped
# 20 times (gtmd reload, alternating build/modules/company.so and
# build/modules/alt/company.so, whose versions differ) with one broken file
# among them.  Prints failed or reset requests (goal 0), p99 during swaps
# against without (goal under 2x), and how many answers each version gave
# (read from each response's x-gtm-module header).
# Runs inside a throwaway cluster (pg_virtualenv) and leaves nothing behind.
#
# Environment (optional): BENCH_DURATION [10] seconds per run, BENCH_CONNS [64]
# CRUD connections, BENCH_GEN_CONNS [16] generate connections,
# BENCH_LATENCY_MS [20] fake provider latency, GTM_PG_POOL_SIZE [8].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { printf 'bench/hotswap.sh: %s\n' "$*" >&2; exit 1; }
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-64}
GEN_CONNS=${BENCH_GEN_CONNS:-16}
LATENCY=${BENCH_LATENCY_MS:-20}
for v in "$DURATION" "$CONNS" "$GEN_CONNS" "$LATENCY"; do
    [[ $v =~ ^[0-9]+$ ]] || die "BENCH_DURATION, BENCH_CONNS, BENCH_GEN_CONNS and BENCH_LATENCY_MS must be whole numbers"
done

unset GTMD_BIN   # it swaps the modules of build/, so it runs build/gtmd
. bench/lib.sh
bench_in_cluster "$0" "$@"

GTMD=build/gtmd
bench_scratch hotswap

DB=gtm_bench
bench_database "$DB"

bench_fake_stack

bench_fake_openai 18093 "$LATENCY" '{"demo": {"company_generate": 1000000000}}'

MODDIR="$TMP/modules"
mkdir "$MODDIR"
cp build/modules/*.so "$MODDIR/"
PORT=18091
ADMIN=18092
env $STACK_ENV GTM_LISTEN=127.0.0.1:$PORT GTM_ADMIN_LISTEN=127.0.0.1:$ADMIN GTM_WORKERS=1 \
    GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-8} GTM_MODULE_DIR="$MODDIR" $OPENAI_ENV \
    "$GTMD" serve 2>"$TMP/gtmd.log" &
GTMD_PID=$!
PIDS+=($GTMD_PID)
bench_wait_gtmd "$PORT"

BODY='{"company_name":"Acme","company_url":"https://acme.example","description":"Anvils.","capabilities":["Anvils: heavy"],"objections":["Price"],"metadata":{}}'
CID=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d "$BODY" "http://127.0.0.1:$PORT/api/companies" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
URL="http://127.0.0.1:$PORT/api/companies/$CID"
GEN_URL="http://127.0.0.1:$PORT/demo/companies/generate-ai"

# Counts answers by the build that gave them (x-gtm-module) and prints them at
# the end as "served <build> <n>"; the generate variant also makes every body
# differ, so no two requests share one pipeline run.
cat >"$TMP/count.lua" <<'LUA'
local threads = {}
setup = function(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end
counts = {}
response = function(status, headers, body)
    local k = headers["x-gtm-module"] or headers["X-Gtm-Module"] or ("status-" .. status)
    counts[k] = (counts[k] or 0) + 1
end
done = function(summary, latency, requests)
    local all = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts")) do all[k] = (all[k] or 0) + v end
    end
    for k, v in pairs(all) do io.write(string.format("served %s %d\n", k, v)) end
end
LUA
cat "$TMP/count.lua" >"$TMP/gen.lua"
cat >>"$TMP/gen.lua" <<LUA
local n = 0
request = function()
    n = n + 1
    local body = '{"website_url":"http://127.0.0.1:$FAKE_PORT/","user_inputted_context":"bench ' .. tid .. '-' .. n .. '"}'
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
LUA
curl -sf -X POST -H 'Content-Type: application/json' -d "{\"website_url\":\"http://127.0.0.1:$FAKE_PORT/\"}" \
    "$GEN_URL" >/dev/null || { cat "$TMP/gtmd.log" >&2; die "a first generation failed"; }

wrk_summary() { # FILE: prints "req/s p99_ms failed"
    "$PY" - "$1" <<'PYEOF'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
print("%.0f %.2f %d" % (rps, p99, (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)))
PYEOF
}

install() { # FILE: as an operator would: a temporary name, then a rename over the old file
    cp "$1" "$MODDIR/.company.so.new"
    mv "$MODDIR/.company.so.new" "$MODDIR/company.so"
}

run_wrk() { # NAME: both clients at once, in the background; WRKS gets their pids
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/count.lua" -H "Authorization: Bearer $TOKEN" "$URL" \
        >"$TMP/$1.crud.wrk" 2>&1 &
    WRKS=($!)
    wrk -t1 -c"$GEN_CONNS" -d"${DURATION}s" --timeout 10s --latency -s "$TMP/gen.lua" "$GEN_URL" \
        >"$TMP/$1.gen.wrk" 2>&1 &
    WRKS+=($!)
}

wrk -t2 -c"$CONNS" -d2s -H "Authorization: Bearer $TOKEN" "$URL" >/dev/null 2>&1 || true   # warm-up
msg "without swaps: GET /api/companies/{id} (wrk -c$CONNS) and POST /demo/companies/generate-ai (wrk -c$GEN_CONNS, provider ${LATENCY} ms), ${DURATION}s"
run_wrk calm
wait "${WRKS[@]}"
read -r C_RPS C_P99 C_BAD < <(wrk_summary "$TMP/calm.crud.wrk")
read -r CG_RPS CG_P99 CG_BAD < <(wrk_summary "$TMP/calm.gen.wrk")

msg "the same while company.so is swapped 20 times (and one broken file)"
run_wrk swap
STEP=$("$PY" -c "print(${DURATION} / 23.0)")
sleep "$STEP"
for i in $(seq 1 21); do
    if (( i == 11 )); then
        printf 'not a module\n' >"$MODDIR/.company.so.new"
        mv "$MODDIR/.company.so.new" "$MODDIR/company.so"
    elif (( i % 2 )); then
        install build/modules/alt/company.so
    else
        install build/modules/company.so
    fi
    GTM_ADMIN_LISTEN=127.0.0.1:$ADMIN "$GTMD" reload >/dev/null </dev/null || die "gtmd reload failed"
    sleep "$STEP"
done
wait "${WRKS[@]}"
read -r S_RPS S_P99 S_BAD < <(wrk_summary "$TMP/swap.crud.wrk")
read -r SG_RPS SG_P99 SG_BAD < <(wrk_summary "$TMP/swap.gen.wrk")

echo
printf '%-44s %10s %9s %8s\n' "run" "req/s" "p99 ms" "failed"
printf '%-44s %10s %9s %8s\n' "GET /api/companies/{id}, calm" "$C_RPS" "$C_P99" "$C_BAD"
printf '%-44s %10s %9s %8s\n' "the same, 20 swaps + 1 broken" "$S_RPS" "$S_P99" "$S_BAD"
printf '%-44s %10s %9s %8s\n' "POST /demo/companies/generate-ai, calm" "$CG_RPS" "$CG_P99" "$CG_BAD"
printf '%-44s %10s %9s %8s\n' "the same, 20 swaps + 1 broken" "$SG_RPS" "$SG_P99" "$SG_BAD"
for f in swap.crud swap.gen; do
    printf 'answers by build during swaps (%s): %s\n' "${f#swap.}" \
        "$(awk '/^served / {printf "%s=%s ", $2, $3}' "$TMP/$f.wrk")"
done
"$PY" - "$TMP/gtmd.log" "$C_P99" "$S_P99" "$CG_P99" "$SG_P99" <<'PYEOF'
import json, re, sys
swaps, took, refused = [], [], 0
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line).get("msg", "")
    except ValueError:
        continue
    m = re.match(r"module company (\S+) reloaded from .* \(generation (\d+)\) in ([\d.]+) ms", msg)
    if m:
        swaps.append(m.group(1))
        took.append(float(m.group(3)))
    refused += "company.so refused on reload" in msg
print("swaps done: %d, versions installed: %s; broken files refused: %d" % (len(swaps), " ".join(swaps), refused))
if took:
    print("each swap held the loop for %.2f ms at most, %.2f ms on average" % (max(took), sum(took) / len(took)))
print("p99 during swaps / without: CRUD %.2fx, generate %.2fx (goal: under 2x)"
      % (float(sys.argv[3]) / float(sys.argv[2]), float(sys.argv[5]) / float(sys.argv[4])))
PYEOF
echo "one process, GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-8}; $(nproc) CPUs shared by wrk, gtmd and Postgres"
