#!/usr/bin/env bash
# Every benchmark in one go, then bench/RESULTS.md: the machine, the date, the
# commit, each benchmark's figures and each ratio against its reference run
# (nginx for HTTP, pgbench for REST, the provider-latency ceiling for
# generation, the calm run for hot swap, the first minute for the soak).
# Each benchmark runs alone (they share the machine's two cores otherwise).
#
# Environment (optional): BENCH_ONLY="http rest generate hotswap soak" (a
# subset, in that order), BENCH_SOAK_SECONDS [600], and what each script takes
# (BENCH_DURATION and so on: see the top of each bench/*.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }
. deploy/lib.sh
ALL=(http rest generate hotswap soak)
read -r -a ONLY <<<"${BENCH_ONLY:-${ALL[*]}}"
for b in "${ONLY[@]}"; do
    [[ " ${ALL[*]} " == *" $b "* ]] || die "BENCH_ONLY: unknown benchmark '$b' (known: ${ALL[*]})"
done

ensure_packages "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}" || die "missing packages"
meson_setup build --buildtype=debugoptimized >/dev/null 2>&1 || die "meson setup build failed"
ninja -C build --quiet

OUT=$(mktemp -d -t gtmd-bench-run.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
declare -A secs=() load=()
# what else was using the CPUs as each benchmark started: figures from a busy
# machine are worth less, and RESULTS.md says so (ps's %CPU is meaningless for
# processes a few seconds old, such as ps itself)
busy() {
    printf 'load %s; other processes over 10%% CPU: %s' "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(ps -eo pcpu=,etimes=,comm= --sort=-pcpu |
           awk '$1 > 10 && $2 > 5 {printf "%s %s%%, ", $3, $1; n++} END {if (!n) printf "none"}' | sed 's/, $//')"
}
for b in "${ONLY[@]}"; do
    msg "bench/$b.sh"
    load[$b]=$(busy)
    t=$SECONDS
    # each script prints its figures last; keep all of it for RESULTS.md
    if ! GTMD_BIN=build/gtmd "bench/$b.sh" >"$OUT/$b.out" 2>"$OUT/$b.err"; then
        cat "$OUT/$b.err" >&2
        die "bench/$b.sh failed (its output: above)"
    fi
    secs[$b]=$((SECONDS - t))
    printf '%s\n' "${load[$b]}" >"$OUT/$b.load"
    sed -n '/^$/,$p' "$OUT/$b.out" | tail -n +2
done

{
    printf '%s\n' "# Benchmark results" ""
    printf 'Written by `bench/run.sh` on %s, commit `%s`%s.\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(git diff --quiet -- . ':!bench/RESULTS.md' 2>/dev/null || echo ' (with uncommitted changes)')"
    printf '%s\n' "## Machine" ""
    printf -- '- CPU: %s, %s cores\n' "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(nproc)"
    printf -- '- memory: %s\n' "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    printf -- '- system: %s, kernel %s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(uname -r)"
    printf -- '- gtmd built `debugoptimized` with %s; wrk %s; PostgreSQL %s\n' \
        "$(gcc --version | head -1)" "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')" \
        "$(pg_config --version 2>/dev/null | awk '{print $2}')"
    printf -- '- load generators, the reference servers and gtmd share those cores\n\n'
    "$PY" - "$OUT" "${ONLY[@]}" <<'PYEOF'
import os, re, sys
out, names = sys.argv[1], sys.argv[2:]
def text(n):
    return open(os.path.join(out, n + ".out")).read()
def find(pat, t, group=1, default="-"):
    m = re.search(pat, t, re.M)
    return m.group(group) if m else default
def nth(pat, t, i, default="-"):
    found = re.findall(pat, t, re.M)
    return found[i] if len(found) > i else default
rows = []
for n in names:
    t = text(n)
    if n == "http":
        rows.append(("HTTP: GET /health, gtmd against nginx", find(r"^gtmd\s+(\d+)", t) + " req/s",
                     find(r"^nginx\s+(\d+)", t) + " req/s",
                     find(r"gtmd/nginx: req/s ([\d.]+x)", t) + " req/s, " + find(r"p99 ([\d.]+x)", t) + " p99"))
    elif n == "rest":
        rows.append(("REST: GET /api/companies/{id} against pgbench's SELECT",
                     find(r"^gtmd GET \S+\s+(\d+)", t) + "/s", find(r"^pgbench the same SELECT\s+(\d+)", t) + "/s",
                     find(r"GET ([\d.]+x)", t)))
        rows.append(("REST: POST /api/companies against pgbench's INSERT",
                     find(r"^gtmd POST \S+\s+(\d+)", t) + "/s", find(r"^pgbench the same INSERT\s+(\d+)", t) + "/s",
                     find(r"POST ([\d.]+x)", t)))
    elif n == "generate":
        rows.append(("Generation: POST /demo/companies/generate-ai against its ceiling",
                     find(r"^completed\s+(\d+ req/s)", t), find(r"^ceiling\s+(\d+ req/s)", t),
                     find(r"^ratio\s+([\d.]+%)", t)))
    elif n == "hotswap":
        rows.append(("Hot swap: CRUD p99 during 20 swaps against calm",
                     find(r"^the same, 20 swaps \+ 1 broken\s+\d+\s+([\d.]+)", t) + " ms",
                     find(r"^GET /api/companies/\{id\}, calm\s+\d+\s+([\d.]+)", t) + " ms", find(r"CRUD ([\d.]+x)", t)))
        rows.append(("Hot swap: generate p99 during 20 swaps against calm",
                     nth(r"^the same, 20 swaps \+ 1 broken\s+\d+\s+([\d.]+)", t, 1) + " ms",
                     find(r"^POST /demo/companies/generate-ai, calm\s+\d+\s+([\d.]+)", t) + " ms",
                     find(r"generate ([\d.]+x)", t)))
    elif n == "soak":
        rows.append(("Soak: RSS at the end against after the first minute",
                     find(r"at the end ([\d.]+ MiB)", t), find(r"after the first minute ([\d.]+ MiB)", t),
                     find(r"^growth\s+(\S+ MiB)", t) + ", " + find(r"slope (\S+ KiB/min)", t)))
print("## Summary\n")
print("| figure | gtmd | reference | ratio |")
print("| --- | --- | --- | --- |")
for r in rows:
    print("| %s | %s | %s | %s |" % r)
print()
for n in names:
    t = text(n)
    blank = t.find("\n\n")
    figures = t[blank + 2:] if blank >= 0 else t
    print("## bench/%s.sh\n" % n)
    busy = open(os.path.join(out, n + ".load")).read().strip()
    print("At its start: %s.\n" % (busy.rstrip(": ") if busy.endswith(": ") else busy))
    print("```")
    print(figures.rstrip())
    print("```\n")
PYEOF
} >bench/RESULTS.md
msg "wrote bench/RESULTS.md ($(for b in "${ONLY[@]}"; do printf '%s %ss ' "$b" "${secs[$b]}"; done))"
