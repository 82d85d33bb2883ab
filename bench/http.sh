#!/usr/bin/env bash
# HTTP benchmark: GET /health on gtmd and on nginx (Debian's nginx-light, with a
# config of its own), one after the other on loopback, with wrk -t2 -c64.
# For each server: resident memory idle and with N idle keep-alive connections
# (bench/hold_conns.py), a warm-up, the measured run, then SIGTERM.
# Prints a summary table at the end. Leaves nothing running.
#
# Environment (all optional):
#   BENCH_DURATION     measured wrk run, seconds ("10" or "10s")   [10]
#   BENCH_WARMUP       warm-up wrk run per server, seconds          [2]
#   BENCH_HOLD_CONNS   idle connections for the memory figure      [10000]
#   BENCH_TARGETS      which servers, in order                      ["gtmd nginx"]
#   BENCH_GTMD_PORT, BENCH_NGINX_PORT   loopback ports              [18080, 18081]
#   GTMD_BIN           binary to run; when unset build/gtmd is (re)built first
#   BENCH_GTMD_LOG     where gtmd's stderr goes                     [temp dir; /dev/null ok]
#   BENCH_KEEP_TMP=1   keep the temp dir (configs, logs, wrk output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

secs() { # "10" or "10s" -> 10
    local v=${1%s}
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "$2 must be a whole number of seconds, got '$1'"
    echo "$v"
}
DURATION=$(secs "${BENCH_DURATION:-10}" BENCH_DURATION)
WARMUP=$(secs "${BENCH_WARMUP:-2}" BENCH_WARMUP)
HOLD=${BENCH_HOLD_CONNS:-10000}
[[ $HOLD =~ ^[0-9]+$ ]] || die "BENCH_HOLD_CONNS must be a number"
read -r -a TARGETS <<<"${BENCH_TARGETS:-gtmd nginx}"
declare -A PORT=([gtmd]=${BENCH_GTMD_PORT:-18080} [nginx]=${BENCH_NGINX_PORT:-18081})
for t in "${TARGETS[@]}"; do
    [[ $t == gtmd || $t == nginx ]] || die "BENCH_TARGETS: unknown server '$t' (gtmd, nginx)"
done
WRK_THREADS=2 WRK_CONNS=64
START_TIMEOUT=10 # seconds for a server to answer /health
STOP_TIMEOUT=10  # seconds for a server to exit after SIGTERM
NGINX=/usr/sbin/nginx

# --- packages, binary ---------------------------------------------------------
want_gtmd=0
for t in "${TARGETS[@]}"; do [[ $t == gtmd ]] && want_gtmd=1; done
pkgs=("${BENCH_PKGS[@]}")
((want_gtmd)) && [[ -z ${GTMD_BIN:-} ]] && pkgs+=("${BUILD_PKGS[@]}")
rc=0
ensure_packages "${pkgs[@]}" || rc=$?
((rc == 0)) || exit "$rc"

GTMD_DESC=""
if ((want_gtmd)); then
    if [[ -z ${GTMD_BIN:-} ]]; then
        GTMD_BIN=build/gtmd
        if [[ ! -f build/build.ninja ]]; then
            msg "configuring build/"
            meson_setup build --buildtype=debugoptimized >/dev/null ||
                die "meson setup build failed (run it by hand to see why)"
        fi
        ninja -C build --quiet >/dev/null || die "building build/ failed: ninja -C build"
        bt=$(meson introspect build --buildoptions 2>/dev/null |
            "$PY" -c 'import json,sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"]=="buildtype"), "?"))' ||
            echo "?")
        GTMD_DESC=" (buildtype $bt)"
    fi
    [[ -x $GTMD_BIN ]] || die "gtmd binary $GTMD_BIN not found or not executable"
fi

# --- file descriptors ---------------------------------------------------------
need_fds=$((HOLD + 4096))
if (($(ulimit -n) < need_fds)); then
    ulimit -n "$need_fds" 2>/dev/null ||
        die "cannot raise the open-file limit to $need_fds (hard limit $(ulimit -Hn)); run as root or lower BENCH_HOLD_CONNS"
fi

# --- process bookkeeping ------------------------------------------------------
TMP=$(mktemp -d -t gtmd-bench.XXXXXX)
chmod 755 "$TMP" # nginx's worker runs as nobody
STARTED=()       # PIDs this script started and has not stopped yet

children_of() { # direct children of PID, from /proc (no procps needed)
    local f stat rest
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue
        rest=${stat##*) }
        read -r _ ppid _ <<<"$rest"
        [[ $ppid == "$1" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}
tree_of() { # PID and all its descendants
    local c
    echo "$1"
    for c in $(children_of "$1"); do tree_of "$c"; done
}
rss_kib() { # summed VmRSS of PID's process tree, KiB
    local sum=0 p v
    for p in $(tree_of "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
forget() { # drop PID from STARTED
    local -a keep=()
    local p
    for p in "${STARTED[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}
# stop PID [SIG]: signal PID, wait up to STOP_TIMEOUT, then SIGKILL it and any
# descendants left. Sets STOP_STATUS to its exit status ("killed" if it had to be).
stop() {
    local pid=$1 sig=${2:-TERM} i tree p
    STOP_STATUS=""
    forget "$pid"
    kill -0 "$pid" 2>/dev/null || {
        STOP_STATUS=gone
        wait "$pid" 2>/dev/null && STOP_STATUS=0 || STOP_STATUS=$?
        return 0
    }
    tree=$(tree_of "$pid")
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # a child that exited is a zombie until reaped: look at its state
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        warn "PID $pid did not exit ${STOP_TIMEOUT}s after SIG$sig; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        STOP_STATUS=killed
    fi
    if wait "$pid" 2>/dev/null; then
        [[ -n $STOP_STATUS ]] || STOP_STATUS=0
    else
        local st=$?
        [[ -n $STOP_STATUS ]] || STOP_STATUS=$st
    fi
    for p in $tree; do # leftovers, e.g. workers whose master was killed
        [[ $p == "$pid" ]] && continue
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    return 0
}
cleanup() {
    local p
    trap - EXIT INT TERM
    for p in "${STARTED[@]}"; do stop "$p" TERM; done
    if [[ ${BENCH_KEEP_TMP:-} == 1 ]]; then
        echo "temp dir kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
    local f
    for f; do
        [[ -s $f ]] || continue
        echo "--- last lines of $f:" >&2
        tail -n 20 "$f" >&2
    done
    return 0
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready NAME PID PORT LOG...: until GET /health answers {"status":"ok"};
# on failure show the end of each LOG and exit.
wait_ready() {
    local name=$1 pid=$2 port=$3 i body
    shift 3
    local -a logs=("$@")
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
            stop "$pid"
            printf 'error: %s exited during startup (status %s)\n' "$name" "$STOP_STATUS" >&2
            show_logs "${logs[@]}"
            exit 1
        fi
        body=$(curl -sS --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null || true)
        if [[ $body =~ \"status\"[[:space:]]*:[[:space:]]*\"ok\" ]]; then return 0; fi
        sleep 0.1
    done
    printf 'error: %s did not answer GET http://127.0.0.1:%s/health with {"status":"ok"} within %ss (last answer: %q)\n' \
        "$name" "$port" "$START_TIMEOUT" "$body" >&2
    show_logs "${logs[@]}"
    exit 1
}

SERVER_PID=""
start_gtmd() {
    local port=${PORT[gtmd]} log=${BENCH_GTMD_LOG:-$TMP/gtmd.log}
    local -a env=(GTM_LISTEN="127.0.0.1:$port" GTM_ADMIN_LISTEN=off GTM_WORKERS=1)
    # More connections than the default limit (16384) only if asked for.
    ((HOLD + 1024 > 16384)) && env+=(GTM_MAX_CONNECTIONS=$((HOLD + 1024)))
    env -u GTM_TLS_LISTEN "${env[@]}" "$GTMD_BIN" serve >/dev/null 2>"$log" </dev/null &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_ready gtmd "$SERVER_PID" "$port" "$log"
}

start_nginx() {
    local port=${PORT[nginx]} d=$TMP/nginx
    local wc=$((HOLD + 1024))
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
# Written by bench/http.sh for one run.
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile $((wc + 1024));
events {
    worker_connections $wc;
}
http {
    access_log $d/access.log;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 100000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$port;
        location = /health {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
        location / {
            return 404;
        }
    }
}
EOF
    "$NGINX" -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$d/check.log" ||
        die "nginx rejects its config $d/nginx.conf: $(cat "$d/check.log")"
    "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 </dev/null &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_ready nginx "$SERVER_PID" "$port" "$d/error.log" "$d/stdout.log"
}

# to_ms VALUE: wrk's "512.00us" / "1.20ms" / "1.01s" -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

# run_wrk SECONDS URL [ARGS...]: wrk, bounded in time; in the background so
# that a signal to this script interrupts it at once.
run_wrk() {
    local d=$1 url=$2 pid rc=0
    shift 2
    timeout -k 5 $((d + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${d}s" "$@" "$url" </dev/null &
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}

declare -A RPS P50 P99 ERRS RSS_IDLE RSS_HOLD HELD CLOSED EXIT
bench_one() {
    local name=$1 port=${PORT[$1]} url out
    url="http://127.0.0.1:${PORT[$1]}/health"
    port_busy "$port" && die "port $port is already in use (set BENCH_${name^^}_PORT)"
    msg "$name: starting on 127.0.0.1:$port"
    "start_$name"
    local pid=$SERVER_PID
    sleep 0.5
    RSS_IDLE[$name]=$(rss_kib "$pid")

    # Idle keep-alive connections
    if ((HOLD > 0)); then
        msg "$name: opening $HOLD idle keep-alive connections"
        out=$TMP/hold-$name.out
        "$PY" bench/hold_conns.py --port "$port" -n "$HOLD" --request /health \
            --open-seconds 60 --max-seconds 300 >"$out" 2>"$TMP/hold-$name.err" </dev/null &
        local hpid=$! i
        STARTED+=("$hpid")
        for ((i = 0; i < 900; i++)); do
            grep -q '^ready' "$out" && break
            kill -0 "$hpid" 2>/dev/null || break
            sleep 0.1
        done
        grep -q '^ready' "$out" || {
            stop "$hpid"
            die "hold_conns.py did not get ready against $name: $(cat "$out" "$TMP/hold-$name.err")"
        }
        sleep 1 # let the server settle
        RSS_HOLD[$name]=$(rss_kib "$pid")
        stop "$hpid"
        HELD[$name]=$(sed -n 's/^ready held=\([0-9]*\).*/\1/p' "$out")
        CLOSED[$name]=$(sed -n 's/^done .*closed_by_peer=\([0-9]*\).*/\1/p' "$out")
        sed -n 's/^ready /  /p' "$out"
        [[ -s $TMP/hold-$name.err ]] && sed 's/^/  /' "$TMP/hold-$name.err"
        kill -0 "$pid" 2>/dev/null || die "$name died while holding $HOLD connections"
        sleep 1
    fi

    msg "$name: warm-up ${WARMUP}s"
    run_wrk "$WARMUP" "$url" >/dev/null || die "wrk warm-up against $name failed"
    msg "$name: wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency $url"
    out=$TMP/wrk-$name.txt
    run_wrk "$DURATION" "$url" --latency >"$out" || die "wrk against $name failed: $(cat "$out")"
    RPS[$name]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    ERRS[$name]=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10}
                       /Non-2xx or 3xx responses:/ {s += $NF} END {print s + 0}' "$out")
    [[ -n ${RPS[$name]} ]] || die "could not read wrk's output for $name: $(cat "$out")"
    kill -0 "$pid" 2>/dev/null || die "$name died during the benchmark"
    stop "$pid" TERM
    EXIT[$name]=$STOP_STATUS
}

msg "GET /health, wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s after a ${WARMUP}s warm-up; $(nproc) CPUs; $HOLD idle connections"
((want_gtmd)) && msg "gtmd: $GTMD_BIN$GTMD_DESC"
for t in "${TARGETS[@]}"; do bench_one "$t"; done

# --- summary ------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo
printf '%-6s %10s %9s %9s %7s %11s %17s %9s %6s\n' server 'req/s' 'p50 ms' 'p99 ms' errors 'RSS idle' "RSS +$HOLD conns" 'per conn' 'TERM'
for t in "${TARGETS[@]}"; do
    held='-' per='-'
    if ((HOLD > 0)); then
        held=$(mib "${RSS_HOLD[$t]}")
        ((${HELD[$t]:-0} > 0)) &&
            per=$(awk -v a="${RSS_HOLD[$t]}" -v b="${RSS_IDLE[$t]}" -v n="${HELD[$t]}" 'BEGIN { printf "%.1f KiB", (a - b) / n }')
    fi
    printf '%-6s %10s %9s %9s %7s %11s %17s %9s %6s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${ERRS[$t]}" \
        "$(mib "${RSS_IDLE[$t]}")" "$held" "$per" "${EXIT[$t]}"
done
if [[ -n ${RPS[gtmd]:-} && -n ${RPS[nginx]:-} ]]; then
    awk -v g="${RPS[gtmd]}" -v n="${RPS[nginx]}" -v gp="${P99[gtmd]}" -v np="${P99[nginx]}" \
        'BEGIN { printf "gtmd/nginx: req/s %.2fx, p99 %.2fx\n", (n ? g / n : 0), (np ? gp / np : 0) }'
fi
notes="RSS: VmRSS summed over the server's processes (nginx: master + worker). TERM: exit status after SIGTERM."
[[ -n ${RPS[nginx]:-} ]] && notes+=$'\n'"nginx allocates its worker_connections ($((HOLD + 1024))) up front: its idle RSS includes them."
for t in "${TARGETS[@]}"; do
    if ((HOLD > 0)); then
        [[ ${HELD[$t]:-0} == "$HOLD" ]] || notes+=$'\n'"$t: only ${HELD[$t]:-0} of $HOLD connections opened."
        [[ ${CLOSED[$t]:-0} == 0 ]] || notes+=$'\n'"$t: closed ${CLOSED[$t]} of the idle connections while they were held."
    fi
done
echo "$notes"
