# What the benchmarks share; sourced by bench/*.sh after deploy/lib.sh.  Each
# defines die() before sourcing.
. deploy/lib.sh

# Outside the throwaway cluster: installs what is missing, builds (unless
# GTMD_BIN names a binary), and runs the calling script again inside
# pg_virtualenv.  Inside it: returns.
bench_in_cluster() { # SCRIPT ARGS...
    [[ -z ${GTM_BENCH_INSIDE:-} ]] || return 0
    ensure_packages "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}" || die "missing packages"
    if [[ -z ${GTMD_BIN:-} ]]; then
        # build chatter goes to stderr: bench/run.sh keeps stdout for the figures
        meson_setup build --buildtype=debugoptimized >&2
        ninja -C build --quiet >&2
    fi
    export GTM_BENCH_INSIDE=1
    exec pg_virtualenv -t -- "$@"
}

# A scratch directory and the list of processes to end on exit: $TMP, PIDS.
bench_scratch() { # NAME
    TMP=$(mktemp -d -t "gtmd-$1-bench.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}

# A fresh, migrated database in the throwaway cluster; exports DATABASE_URL.
bench_database() { # DB
    psql -qX -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    export DATABASE_URL="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$1"
    "$GTMD" migrate >/dev/null
}

# A JWKS like Stack Auth's and a token for one user: sets TOKEN, USER_ID, STACK_ENV.
bench_fake_stack() {
    mkfifo "$TMP/stack.in"
    "$PY" bench/fake_stack.py <"$TMP/stack.in" >"$TMP/stack.json" &
    PIDS+=($!)
    exec 7>"$TMP/stack.in"
    for _ in $(seq 100); do [[ -s $TMP/stack.json ]] && break; sleep 0.1; done
    [[ -s $TMP/stack.json ]] || die "the fake Stack Auth did not start"
    read -r TOKEN USER_ID STACK_ENV < <("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["token"], d["user_id"], " ".join("%s=%s" % kv for kv in d["env"].items()))' "$TMP/stack.json")
}

# The fake OpenAI (bench/fake_openai.c) on PORT, answering after LATENCY ms;
# sets FAKE_PORT and OPENAI_ENV (the settings that point gtmd at it and let it
# fetch the fake's page as the website, with the demo limits in LIMITS_JSON).
bench_fake_openai() { # PORT LATENCY LIMITS_JSON
    FAKE_PORT=$1
    build/bench/fake_openai "$FAKE_PORT" "$2" tests/unit/schemas/product_overview.example.json 2>"$TMP/fake.log" &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q listening "$TMP/fake.log" 2>/dev/null && break; sleep 0.1; done
    grep -q listening "$TMP/fake.log" || die "the fake OpenAI did not start"
    printf '%s\n' "$3" >"$TMP/limits.json"
    OPENAI_ENV="LLM_PROVIDERS=openai OPENAI_API_KEY=bench OPENAI_BASE_URL=http://127.0.0.1:$FAKE_PORT/v1"
    OPENAI_ENV+=" GTM_FETCH_ALLOW=127.0.0.1:$FAKE_PORT GTM_RATE_LIMITS_FILE=$TMP/limits.json ENVIRONMENT=production"
}

# Until gtmd answers /health on PORT (its log printed if it never does).
bench_wait_gtmd() { # PORT
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$1/health" >/dev/null || { cat "$TMP/gtmd.log" >&2; die "gtmd did not start"; }
}
