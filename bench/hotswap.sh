#!/usr/bin/env bash
# Hot swap benchmark: wrk with a valid Bearer token against
# GET /api/companies/{id}, first without swaps, then while the company module
# is swapped 20 times (gtmd reload, alternating build/modules/company.so and
# build/modules/alt/company.so, whose versions differ) with one broken file
# among them.  Prints failed or reset requests (goal 0), p99 during swaps
# against without (goal under 2x) and the versions each swap installed.
# Runs inside a throwaway cluster (pg_virtualenv) and leaves nothing behind.
#
# Environment (optional): BENCH_DURATION [10] seconds per run, BENCH_CONNS [64],
# GTM_PG_POOL_SIZE [8] connections gtmd keeps.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { printf 'bench/hotswap.sh: %s\n' "$*" >&2; exit 1; }
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-64}
[[ $DURATION =~ ^[0-9]+$ && $CONNS =~ ^[0-9]+$ ]] || die "BENCH_DURATION and BENCH_CONNS must be whole numbers"

unset GTMD_BIN   # it swaps the modules of build/, so it runs build/gtmd
. bench/lib.sh
bench_in_cluster "$0" "$@"

GTMD=build/gtmd
bench_scratch hotswap

DB=gtm_bench
bench_database "$DB"

bench_fake_stack

MODDIR="$TMP/modules"
mkdir "$MODDIR"
cp build/modules/*.so "$MODDIR/"
PORT=18091
ADMIN=18092
env $STACK_ENV GTM_LISTEN=127.0.0.1:$PORT GTM_ADMIN_LISTEN=127.0.0.1:$ADMIN GTM_WORKERS=1 \
    GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-8} GTM_MODULE_DIR="$MODDIR" "$GTMD" serve 2>"$TMP/gtmd.log" &
GTMD_PID=$!
PIDS+=($GTMD_PID)
bench_wait_gtmd "$PORT"

BODY='{"company_name":"Acme","company_url":"https://acme.example","description":"Anvils.","capabilities":["Anvils: heavy"],"objections":["Price"],"metadata":{}}'
CID=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d "$BODY" "http://127.0.0.1:$PORT/api/companies" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
URL="http://127.0.0.1:$PORT/api/companies/$CID"

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

wrk -t2 -c"$CONNS" -d2s -H "Authorization: Bearer $TOKEN" "$URL" >/dev/null 2>&1 || true   # warm-up
msg "GET /api/companies/{id} without swaps: wrk -t2 -c$CONNS -d${DURATION}s"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$URL" >"$TMP/calm.wrk" 2>&1
read -r C_RPS C_P99 C_BAD < <(wrk_summary "$TMP/calm.wrk")

msg "the same while company.so is swapped 20 times (and one broken file)"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$URL" >"$TMP/swap.wrk" 2>&1 &
WRK=$!
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
wait "$WRK"
read -r S_RPS S_P99 S_BAD < <(wrk_summary "$TMP/swap.wrk")

echo
printf '%-34s %10s %9s %8s\n' "run" "req/s" "p99 ms" "failed"
printf '%-34s %10s %9s %8s\n' "GET /api/companies/{id}, calm" "$C_RPS" "$C_P99" "$C_BAD"
printf '%-34s %10s %9s %8s\n' "the same, 20 swaps + 1 broken" "$S_RPS" "$S_P99" "$S_BAD"
"$PY" - "$TMP/gtmd.log" "$C_P99" "$S_P99" <<'PYEOF'
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
print("p99 during swaps / without: %.2fx (goal: under 2x)" % (float(sys.argv[3]) / float(sys.argv[2])))
PYEOF
echo "one process, GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-8}; $(nproc) CPUs shared by wrk, gtmd and Postgres"
