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
# setup_database: the spot for a later change that starts a throwaway Postgres
# under .state/pg and runs `gtmd migrate` against it, exporting DATABASE_URL.
# For now gtmd runs without a database unless DATABASE_URL is already set.
setup_database() {
    :
}
setup_database

# --- run ----------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
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
db="none (DATABASE_URL unset)"
[[ -z ${DATABASE_URL:-} ]] || db="DATABASE_URL is set"

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
Database: $db
Logs: JSON lines on stderr. Stop with Ctrl-C.

EOF

export GTM_LISTEN="127.0.0.1:$HTTP_PORT"
export GTM_TLS_LISTEN="127.0.0.1:$HTTPS_PORT"
export GTM_TLS_CERT=$CERT
export GTM_TLS_KEY=$KEY
exec "$GTMD" serve
