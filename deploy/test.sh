#!/usr/bin/env bash
# Install what is missing, build build/ (debugoptimized), build-asan/
# (ASan+UBSan) and build-fuzz/ (clang, libFuzzer), run every test suite in
# build/, the e2e suite in build-asan/, the fuzz targets in build-fuzz/ and the
# functional e2e tests under valgrind, each against a throwaway PostgreSQL
# cluster, and end with one line:
#   N passed, M failed
# Exit status: 0 when nothing failed, 2 when packages are missing and we are not
# root, 1 otherwise. Logs of the steps whose output is not shown: .state/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/lib.sh
. deploy/lib.sh

LOGDIR=.state/logs
mkdir -p "$LOGDIR"
T0=$SECONDS
failed_steps=() # steps that failed: each counts as one failure in the summary
runs=()         # "label|build dir|exit status|log base" of each meson test run

# summarize [exit status]: print per-run results and, as the very last line,
# "N passed, M failed"; then exit (non-zero when anything failed).
summarize() {
    local want_rc=${1:-}
    local -a args=()
    local r s
    for r in "${runs[@]}"; do args+=(--run "$r"); done
    for s in "${failed_steps[@]}"; do args+=(--step "$s"); done
    echo "--- summary ($((SECONDS - T0)) s) ---"
    local out="" line=""
    if [[ -x $PY ]]; then
        out=$("$PY" - "${args[@]}" <<'EOF'
import json, os, sys

PASS = {"OK", "EXPECTEDFAIL"}
passed = failed = 0
argv = sys.argv[1:]
runs, steps = [], []
for flag, val in zip(argv[0::2], argv[1::2]):
    (runs if flag == "--run" else steps).append(val)

for run in runs:
    label, bdir, rc, logbase = run.rsplit("|", 3)
    rc = int(rc)
    path = os.path.join(bdir, "meson-logs", logbase + ".json")
    p = f = s = 0
    bad = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, raw in enumerate(fh, 1):
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    t = json.loads(raw)
                    res = str(t.get("result", "?"))
                    name = str(t.get("name", "?"))
                except (ValueError, AttributeError):
                    res, name = "UNREADABLE", f"{path}:{n}"
                if res in PASS:
                    p += 1
                elif res == "SKIP":
                    s += 1
                else:
                    f += 1
                    bad.append(f"{name} ({res})")
    except FileNotFoundError:
        pass  # no tests defined, or meson test never got to write its log
    if rc != 0 and f == 0:
        f = 1
        bad.append(f"meson test exited {rc} with no failed test in {path}")
    print(f"{label}: {p} passed, {f} failed, {s} skipped")
    for b in bad:
        print(f"  FAILED: {b}")
    passed += p
    failed += f

for st in steps:
    print(f"step failed: {st}")
    failed += 1
print(f"{passed} passed, {failed} failed")
EOF
        ) || true
        [[ -z $out ]] || printf '%s\n' "$out"
        line=$(tail -n 1 <<<"$out")
    fi
    if [[ ! $line =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]]; then
        # No usable python: count only what we know without it.
        local nf=${#failed_steps[@]}
        for r in "${runs[@]}"; do r=${r%|*}; [[ ${r##*|} == 0 ]] || nf=$((nf + 1)); done
        ((nf > 0)) || nf=1 # the summary itself failed
        line="0 passed, $nf failed"
        echo "$line"
    fi
    local nfailed=${line#*passed, }
    nfailed=${nfailed%% *}
    if [[ -n $want_rc ]]; then exit "$want_rc"; fi
    ((nfailed == 0)) || exit 1
    exit 0
}

# --- 1. packages --------------------------------------------------------------
rc=0
ensure_packages "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" || rc=$?
if ((rc != 0)); then
    failed_steps+=("install packages")
    summarize "$rc"
fi

# --- 2. build -----------------------------------------------------------------
declare -A built=()
build_dir() { # build_dir DIR MESON-ARGS...
    local dir=$1
    shift
    local log=$LOGDIR/setup-$dir.log t=$SECONDS
    if ! meson_setup "$dir" "$@" >"$log" 2>&1; then
        echo "meson setup $dir failed; $log:" >&2
        cat "$log" >&2
        failed_steps+=("meson setup $dir")
        return 0
    fi
    if ! ninja -C "$dir" --quiet; then
        failed_steps+=("ninja -C $dir")
        return 0
    fi
    built[$dir]=1
    msg "built $dir ($((SECONDS - t)) s)"
}
msg "building build/, build-asan/ and build-fuzz/"
build_dir build --buildtype=debugoptimized
build_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
# libFuzzer needs clang; the targets are built only there (tests/fuzz/meson.build)
export CC=clang
build_dir build-fuzz -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
unset CC

# --- 3. tests -----------------------------------------------------------------
# Tests get a clean environment: no LLM keys, no database or gtmd settings from
# the caller's shell. The one database they see is the throwaway cluster.
unset OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY OPENAI_BASE_URL DATABASE_URL
while read -r v; do unset "$v"; done < <(compgen -v GTM_ || true)

# Any sanitizer finding fails the test that hit it: ASan and LSan stop the
# process with exit status 1 (ASan's default), UBSan is made fatal too.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# WITH_PG CMD...: run CMD with a throwaway PostgreSQL cluster (pg_virtualenv
# exports PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) and DATABASE_URL
# pointing at it. -t keeps the cluster in a temp dir even as root, so nothing
# lands in /etc/postgresql and a stale cluster from a killed run is no obstacle.
# shellcheck disable=SC2016  # expanded by the inner bash
WITH_PG=(pg_virtualenv -t -- bash -c
    'export DATABASE_URL="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE"; exec "$@"'
    with_pg)

# run_tests LABEL DIR MESON-TEST-ARGS...: never stops the script; records the
# run. LOGBASE (default testlog) names its log, for a second run in one dir.
run_tests() {
    local label=$1 dir=$2 logbase=${LOGBASE:-testlog}
    shift 2
    if [[ -z ${built[$dir]:-} ]]; then
        msg "$label: not run, $dir did not build" # counted once, as the build step
        return 0
    fi
    rm -f "$dir/meson-logs/$logbase.json" # never count a stale log
    msg "$label"
    local rc=0 t=$SECONDS
    # timeout: a guard against a hung run; meson's own per-test timeouts apply first.
    timeout -k 30 900 "${WITH_PG[@]}" meson test -C "$dir" --print-errorlogs --logbase "$logbase" "$@" </dev/null ||
        rc=$?
    runs+=("$label|$dir|$rc|$logbase")
    msg "$label: exit $rc ($((SECONDS - t)) s)"
}
run_tests "build: all suites" build
run_tests "build-asan: e2e (ASan+UBSan)" build-asan --suite e2e --timeout-multiplier 3
# each fuzz target for FUZZ_SECONDS after replaying its regression inputs
# (the long runs are in README.md)
export FUZZ_SECONDS=${FUZZ_SECONDS:-15}
run_tests "build-fuzz: libFuzzer targets (ASan+UBSan)" build-fuzz --suite fuzz
# memcheck on the functional e2e tests (the whole suite under valgrind, load
# tests included, is deploy/valgrind.sh: about 6 minutes)
export GTM_TEST_VALGRIND=1 GTM_TEST_SLOW=6
LOGBASE=testlog-valgrind run_tests "build: e2e under valgrind memcheck" build --timeout-multiplier 10 \
    e2e-http e2e-modules e2e-companies e2e-entities e2e-hotswap e2e-openapi
unset GTM_TEST_VALGRIND GTM_TEST_SLOW

# --- 4. summary ---------------------------------------------------------------
summarize
