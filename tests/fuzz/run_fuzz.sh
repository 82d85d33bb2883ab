#!/bin/sh
# run_fuzz.sh TARGET CORPUS_DIR REGRESS_DIR DICT|'' ARTIFACT_DIR
# One fuzz test: replay every input in REGRESS_DIR once (each was a crash;
# each must now pass), then fuzz for FUZZ_SECONDS (default 20) on a scratch
# copy of CORPUS_DIR (the seeds in the tree are never changed).  A crash,
# leak, sanitizer report or hang fails the test; its input is kept in
# ARTIFACT_DIR (crash-<sha1>, timeout-<sha1>, ...), printed below as well.
set -eu
target=$1 corpus=$2 regress=$3 dict=$4 artifacts=$5
secs=${FUZZ_SECONDS:-20}
name=$(basename "$target")

work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/corpus" "$artifacts"
cp "$corpus"/* "$work/corpus/"

# -error_exitcode: libFuzzer's default, 77, would read as "skipped" to meson.
common="-timeout=10 -rss_limit_mb=2048 -error_exitcode=1 -artifact_prefix=$artifacts/$name-"

if [ -d "$regress" ] && [ -n "$(ls -A "$regress" 2>/dev/null)" ]; then
    echo "== $name: regression inputs in $regress"
    # shellcheck disable=SC2086  # $common is several options
    "$target" $common "$regress"/*
fi

echo "== $name: fuzzing for $secs s"
set -- -max_total_time="$secs" -print_final_stats=1
[ -z "$dict" ] || set -- "$@" -dict="$dict"
# A hang that libFuzzer's own -timeout misses (e.g. stuck outside an input)
# is cut by timeout(1), and fails the test.
# shellcheck disable=SC2086
timeout -k 10 $((secs * 3 + 120)) "$target" $common "$@" "$work/corpus"
