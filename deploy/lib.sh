# shellcheck shell=bash
# Helpers shared by deploy/test.sh, deploy/quickstart.sh and bench/http.sh.
# Source it; it defines functions and package lists and runs nothing.

# shellcheck disable=SC2034  # the lists are used by the scripts that source this
BUILD_PKGS=(meson ninja-build pkg-config gcc clang libuv1-dev libcurl4-openssl-dev
            libmbedtls-dev libjwt-dev libjansson-dev libpq-dev node-llhttp libcmocka-dev libgumbo-dev)
# shellcheck disable=SC2034
TEST_PKGS=(postgresql postgresql-common python3-jwt python3-cryptography openssl curl
           valgrind libclang-rt-14-dev haproxy python3-jsonschema
           chromium chromium-driver python3-selenium sslscan)
# shellcheck disable=SC2034
BENCH_PKGS=(wrk nginx-light curl)

# Always this interpreter: the python3 first on PATH may be another one.
PY=/usr/bin/python3

msg() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }

# missing_packages PKG...: print the packages that are not installed, one a line.
missing_packages() {
    local p st
    for p in "$@"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $st == "install ok installed" ]] || printf '%s\n' "$p"
    done
}

# ensure_packages PKG...: install what is missing with apt-get; quiet when
# nothing is. Returns 2 when something is missing and we are not root, 1 when
# the install fails (its log is shown), 0 otherwise.
ensure_packages() {
    local -a missing
    mapfile -t missing < <(missing_packages "$@" | sort -u)
    ((${#missing[@]} == 0)) && return 0
    if ((EUID != 0)); then
        printf 'error: missing Debian packages: %s\n' "${missing[*]}" >&2
        printf 'install them with:\n  sudo apt-get install --no-install-recommends %s\n' "${missing[*]}" >&2
        return 2
    fi
    msg "installing ${missing[*]}"
    local log rc=0
    log=$(mktemp -t gtmd-apt.XXXXXX.log)
    (
        # Keep package scripts from starting services (a system nginx on :80, a
        # postgres "main" cluster): our scripts start their own. Only when no
        # policy exists yet, and removed again when this subshell ends.
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
            trap 'exit 130' INT TERM HUP
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
        fi
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -o DPkg::Lock::Timeout=300 "${missing[@]}"
    ) >"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
        printf 'error: apt-get failed (exit %d); its output:\n' "$rc" >&2
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    mapfile -t missing < <(missing_packages "$@")
    if ((${#missing[@]})); then
        printf 'error: still not installed after apt-get: %s\n' "${missing[*]}" >&2
        return 1
    fi
    return 0
}

# meson_setup DIR ARGS...: configure DIR, or reconfigure it with ARGS when it
# already is a meson build directory (wiping it if reconfiguring fails, e.g.
# after a meson upgrade).
meson_setup() {
    local dir=$1
    shift
    if [[ -f $dir/meson-private/coredata.dat ]]; then
        meson setup --reconfigure "$dir" "$@" || meson setup --wipe "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}
