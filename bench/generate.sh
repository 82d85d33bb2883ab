#!/usr/bin/env bash
# Generation benchmark: POST /demo/companies/generate-ai at BENCH_CONNS (1000)
# concurrent connections against a fake OpenAI that answers every call after
# BENCH_LATENCY_MS (500), the website read from a local page (cached in
# Postgres after the first read).  Each request's body differs, so no two
# share a run.  Prints completed requests per second against the ceiling
# (connections / latency) and gtmd's peak resident memory.  Runs inside a
# throwaway cluster (pg_virtualenv) and leaves nothing behind.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { printf 'bench/generate.sh: %s\n' "$*" >&2; exit 1; }
CONNS=${BENCH_CONNS:-1000}
LATENCY=${BENCH_LATENCY_MS:-500}
DURATION=${BENCH_DURATION:-15}
[[ $CONNS =~ ^[0-9]+$ && $LATENCY =~ ^[0-9]+$ && $DURATION =~ ^[0-9]+$ ]] || die "BENCH_* must be whole numbers"

. bench/lib.sh
bench_in_cluster "$0" "$@"

GTMD=${GTMD_BIN:-build/gtmd}
bench_scratch gen
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

DB=gtm_gen_bench
bench_database "$DB"

# The demo routes are limited per IP; lift the limit for the run.
bench_fake_openai 18190 "$LATENCY" '{"demo": {"company_generate": 1000000000, "account_generate": 1000000000,
          "persona_generate": 1000000000, "campaign_generate": 1000000000}}'

PORT=18191
env GTM_LISTEN=127.0.0.1:$PORT GTM_ADMIN_LISTEN=off GTM_WORKERS=1 GTM_MAX_CONNECTIONS=20000 GTM_PG_POOL_SIZE=${GTM_PG_POOL_SIZE:-16} \
    $OPENAI_ENV GTM_LOG_LEVEL=warn "$GTMD" serve 2>"$TMP/gtmd.log" &
GTMD_PID=$!
PIDS+=($GTMD_PID)
bench_wait_gtmd "$PORT"

cat >"$TMP/gen.lua" <<LUA
-- every request's body differs (thread id + counter), so none share a run
local threads = 0
setup = function(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
local n = 0
local url = "http://127.0.0.1:$FAKE_PORT/"
request = function()
    n = n + 1
    local body = '{"website_url":"' .. url .. '","user_inputted_context":"bench ' .. tid .. '-' .. n .. '"}'
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
LUA

# warm: the page into the cache, the connections to the fake opened
curl -sf -X POST -H 'Content-Type: application/json' -d "{\"website_url\":\"http://127.0.0.1:$FAKE_PORT/\"}" \
    "http://127.0.0.1:$PORT/demo/companies/generate-ai" >/dev/null || { cat "$TMP/gtmd.log" >&2; die "a first generation failed"; }
msg "POST /demo/companies/generate-ai: wrk -t2 -c$CONNS -d${DURATION}s, provider latency ${LATENCY} ms"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency -s "$TMP/gen.lua" "http://127.0.0.1:$PORT/demo/companies/generate-ai" \
    >"$TMP/wrk.out" 2>&1 || true
RSS_PEAK=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$GTMD_PID/status)
"$PY" - "$TMP/wrk.out" "$CONNS" "$LATENCY" "$RSS_PEAK" <<'PYEOF'
import re, sys
t = open(sys.argv[1]).read()
conns, latency, rss = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
m = re.search(r"Requests/sec:\s+([\d.]+)", t)
if not m:
    print(t)
    sys.exit("wrk gave no figure")
rps = float(m.group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs = re.search(r"Socket errors: (.*)", t)
p50 = re.search(r"50%\s+([\d.]+\w+)", t).group(1)
p99 = re.search(r"99%\s+([\d.]+\w+)", t).group(1)
ceiling = conns * 1000.0 / latency
print()
print("completed   %.0f req/s (p50 %s, p99 %s)" % (rps, p50, p99))
print("ceiling     %.0f req/s (%d connections / %d ms)" % (ceiling, conns, latency))
print("ratio       %.1f%% of the ceiling (goal: at least 90%%)" % (100 * rps / ceiling))
print("errors      %s non-2xx; socket errors: %s" % (bad.group(1) if bad else "0", errs.group(1) if errs else "none"))
print("gtmd peak   %.1f MiB resident (goal: under 256 MiB)" % rss)
print("setup       one gtmd process, GTM_PG_POOL_SIZE=%s" % __import__("os").environ.get("GTM_PG_POOL_SIZE", "16"))
PYEOF
# (grep -c exits 1 on a count of 0, which is the good case)
echo "gtmd error lines: $(grep -c '"level":"error"' "$TMP/gtmd.log" || true)"
