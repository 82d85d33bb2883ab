#!/usr/bin/env bash
# The whole e2e suite with every gtmd under valgrind memcheck: an invalid read
# or write, a use of uninitialised memory, or a definite or indirect leak makes
# gtmd exit 97 and fails its test (tests/e2e/harness.py, GTM_TEST_VALGRIND).
# Waits are stretched six times and meson's timeouts ten times; on 2 cores it
# takes about 6 minutes. deploy/test.sh runs the functional subset in CI.
# Usage: deploy/valgrind.sh [meson test names...]   (default: the e2e suite)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. deploy/lib.sh
ensure_packages "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" || exit $?
meson_setup build --buildtype=debugoptimized >/dev/null
ninja -C build --quiet
args=("$@")
((${#args[@]})) || args=(--suite e2e)
export GTM_TEST_VALGRIND=1 GTM_TEST_SLOW=6
unset DATABASE_URL OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY OPENAI_BASE_URL
while read -r v; do unset "$v"; done < <(compgen -v GTM_ | grep -v '^GTM_TEST_' || true)
# shellcheck disable=SC2016  # expanded by the inner bash
exec pg_virtualenv -t -- bash -c \
    'export DATABASE_URL="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE"; exec "$@"' with_pg \
    meson test -C build --print-errorlogs --timeout-multiplier 10 --logbase testlog-valgrind "${args[@]}"
