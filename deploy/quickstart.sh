#!/usr/bin/env bash
# Install what is missing, build build/, make a self-signed certificate for
# localhost once (.state/tls/), and run gtmd in the foreground with plain HTTP
# and HTTPS on loopback. Ctrl-C (SIGINT) or SIGTERM stops it.
#
# Environment (all optional):
#   GTM_HTTP_PORT   plain HTTP port on 127.0.0.1   [8000]
#   GTM_HTTPS_PORT  HTTPS port on 127.0.0.1        [8443]
#   GTMD_BIN        run this binary instead of building and running build/gtmd
#   OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, OPENAI_BASE_URL,
#   DATABASE_URL and the other GTM_* settings are passed through to gtmd.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

HTTP_PORT=${GTM_HTTP_PORT:-8000}
HTTPS_PORT=${GTM_HTTPS_PORT:-8443}
for p in "$HTTP_PORT" "$HTTPS_PORT"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
        echo "error: bad port '$p' (GTM_HTTP_PORT / GTM_HTTPS_PORT)" >&2
        exit 1
    fi
done
TLS_DIR=.state/tls
GTMD=${GTMD_BIN:-build/gtmd}

# --- packages -----------------------------------------------------------------
rc=0
ensure_packages "${BUILD_PKGS[@]}" openssl curl || rc=$?
((rc == 0)) || exit "$rc"

# --- build --------------------------------------------------------------------
if [[ -n ${GTMD_BIN:-} ]]; then
    msg "not building: running $GTMD_BIN"
elif [[ ! -f build/build.ninja ]]; then
    msg "configuring build/"
    mkdir -p .state/logs
    meson_setup build --buildtype=debugoptimized >.state/logs/setup-build.log 2>&1 || {
        cat .state/logs/setup-build.log >&2
        echo "error: meson setup build failed" >&2
        exit 1
    }
fi
if [[ -z ${GTMD_BIN:-} ]]; then
    msg "building build/"
    ninja -C build --quiet
fi
[[ -x $GTMD ]] || {
    echo "error: $GTMD not found or not executable" >&2
    exit 1
}

# --- TLS certificate (once) ---------------------------------------------------
CERT=$ROOT/$TLS_DIR/cert.pem
KEY=$ROOT/$TLS_DIR/key.pem
# Made anew only when missing or expiring within a day.
if [[ ! -s $CERT || ! -s $KEY ]] || ! openssl x509 -in "$CERT" -noout -checkend 86400 >/dev/null 2>&1; then
    msg "making a self-signed certificate for localhost in $TLS_DIR/"
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$KEY.tmp" -out "$CERT.tmp" -days 825 -sha256 \
            -subj "/CN=localhost" \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            -addext "basicConstraints=critical,CA:FALSE" \
            -addext "keyUsage=critical,digitalSignature" \
            -addext "extendedKeyUsage=serverAuth" 2>"$TLS_DIR/openssl.log"
    ) || {
        cat "$TLS_DIR/openssl.log" >&2
        echo "error: openssl could not make the certificate" >&2
        exit 1
    }
    mv "$KEY.tmp" "$KEY"
    mv "$CERT.tmp" "$CERT"
    chmod 644 "$CERT"
    rm -f "$TLS_DIR/openssl.log"
fi

# --- database -----------------------------------------------------------------
# A private Postgres cluster for this checkout: data in .state/pg (kept between
# runs), listening on 127.0.0.1:$GTM_PG_PORT only, stopped when gtmd stops.
# Skipped when DATABASE_URL is already set (yours is used as it is).
PG_PORT=${GTM_PG_PORT:-55432}
PG_DATA=""
PG_AS=()
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
stop_database() {
    [[ -n $PG_DATA ]] || return 0
    "${PG_AS[@]}" "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
}
setup_database() {
    [[ -z ${DATABASE_URL:-} ]] || return 0
    local bin
    bin=$(pg_bin)
    [[ -n $bin ]] || { echo "error: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
    PG_DATA=$ROOT/.state/pg
    if ((EUID == 0)); then
        # initdb refuses to run as root: the cluster belongs to the postgres user
        PG_AS=(runuser -u postgres --)
        if ! runuser -u postgres -- test -x "$ROOT/.state"; then
            PG_DATA=/var/tmp/gtmd-quickstart-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)
        fi
    fi
    if [[ ! -s $PG_DATA/PG_VERSION ]]; then
        msg "creating a private PostgreSQL cluster in $PG_DATA"
        mkdir -p "$PG_DATA"
        if ((EUID == 0)); then chown postgres: "$PG_DATA"; fi
        chmod 700 "$PG_DATA"
        "${PG_AS[@]}" "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >"$ROOT/.state/initdb.log" 2>&1 || {
            cat "$ROOT/.state/initdb.log" >&2
            echo "error: initdb failed" >&2
            exit 1
        }
    fi
    if ! "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        if port_busy "$PG_PORT"; then
            echo "error: 127.0.0.1:$PG_PORT is in use; pick another port with GTM_PG_PORT=..." >&2
            exit 1
        fi
        "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DATA" -w -l "$PG_DATA/server.log" \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DATA" start >/dev/null || {
            tail -n 20 "$PG_DATA/server.log" >&2
            echo "error: PostgreSQL did not start" >&2
            exit 1
        }
    fi
    trap stop_database EXIT
    if ! psql -qX -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'gtmd'" | grep -q 1; then
        psql -qX -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE gtmd" >/dev/null
    fi
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/gtmd"
    "$GTMD" migrate | sed 's/^/    /'
}

# --- sign-in --------------------------------------------------------------------
# Without STACK_PROJECT_ID, a local stand-in for Stack Auth serves a JWKS and
# mints a token, so the signed-in routes can be tried at once.
STACK_PID=""
TOKEN=""
TOKEN_USER=""
setup_signin() {
    [[ -z ${STACK_PROJECT_ID:-} ]] || return 0
    rm -f "$ROOT/.state/stack.json"
    TOKEN_SECONDS=86400 "$PY" "$ROOT/bench/fake_stack.py" < <(sleep infinity) >"$ROOT/.state/stack.json" 2>/dev/null &
    STACK_PID=$!
    for _ in $(seq 100); do [[ -s $ROOT/.state/stack.json ]] && break; sleep 0.1; done
    [[ -s $ROOT/.state/stack.json ]] || { echo "error: the local Stack Auth stand-in did not start" >&2; exit 1; }
    local line kv
    line=$("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["token"], d["user_id"], *("%s=%s" % kv for kv in d["env"].items()))' "$ROOT/.state/stack.json")
    read -r TOKEN TOKEN_USER line <<<"$line"
    for kv in $line; do export "${kv?}"; done
}

mkdir -p "$ROOT/.state"
setup_database
setup_signin

# --- run ----------------------------------------------------------------------
for p in "$HTTP_PORT" "$HTTPS_PORT"; do
    if port_busy "$p"; then
        echo "error: 127.0.0.1:$p is already in use; pick other ports with GTM_HTTP_PORT=... GTM_HTTPS_PORT=..." >&2
        exit 1
    fi
done

llm="none set"
for v in OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY OPENAI_BASE_URL; do
    if [[ -n ${!v:-} ]]; then
        [[ $llm == "none set" ]] && llm=$v || llm+=", $v"
    fi
done
db="your DATABASE_URL"
[[ -z $PG_DATA ]] || db="private cluster in $PG_DATA ($DATABASE_URL)"

cat <<EOF

$("$GTMD" --version 2>/dev/null | head -n 1 || echo gtmd)
  http://127.0.0.1:$HTTP_PORT/health
  https://127.0.0.1:$HTTPS_PORT/health   (self-signed: $TLS_DIR/cert.pem)
Try:
  curl http://127.0.0.1:$HTTP_PORT/health
  curl -k https://127.0.0.1:$HTTPS_PORT/health
  curl --cacert $TLS_DIR/cert.pem https://localhost:$HTTPS_PORT/health
LLM provider ($llm). Give it one with, for example:
  OPENAI_API_KEY=... deploy/quickstart.sh
  ANTHROPIC_API_KEY=... deploy/quickstart.sh
  GEMINI_API_KEY=... deploy/quickstart.sh
  OPENAI_BASE_URL=http://127.0.0.1:11434/v1 deploy/quickstart.sh   (a local Ollama)
Admin (this machine only): http://127.0.0.1:${GTM_ADMIN_PORT:-9000}/metrics and /health/detailed; readiness: http://127.0.0.1:$HTTP_PORT/ready
Database: $db
Logs: JSON lines on stderr. Stop with Ctrl-C.
EOF
if [[ -n $TOKEN ]]; then
    cat <<EOF

Signed-in routes, with a token from a local Stack Auth stand-in (user $TOKEN_USER, valid 24 h;
set STACK_PROJECT_ID to use your own Stack Auth project instead):
  TOKEN=$TOKEN
  curl -s -X POST http://127.0.0.1:$HTTP_PORT/api/companies -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{"company_name":"Acme","company_url":"https://acme.example","description":"Anvils.","capabilities":["Anvils: heavy"],"objections":["Price"],"metadata":{}}'
  curl -s http://127.0.0.1:$HTTP_PORT/api/companies -H "Authorization: Bearer \$TOKEN"
EOF
fi
echo

export GTM_LISTEN="127.0.0.1:$HTTP_PORT"
export GTM_ADMIN_LISTEN="127.0.0.1:${GTM_ADMIN_PORT:-9000}"
export GTM_TLS_LISTEN="127.0.0.1:$HTTPS_PORT"
export GTM_TLS_CERT=$CERT
export GTM_TLS_KEY=$KEY
# Not exec: the private database and the sign-in stand-in stop when gtmd does.
"$GTMD" serve &
GTMD_PID=$!
trap 'kill -TERM "$GTMD_PID" 2>/dev/null' INT TERM
rc=0
wait "$GTMD_PID" || rc=$?
if kill -0 "$GTMD_PID" 2>/dev/null; then wait "$GTMD_PID" || rc=$?; fi
if [[ -n $STACK_PID ]]; then kill "$STACK_PID" 2>/dev/null || true; fi
exit "$rc"
