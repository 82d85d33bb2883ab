# gtmd container image.
#   docker build -t gtmd .
#   docker run --rm --env-file .env -e DATABASE_URL=... gtmd gtmd migrate
#   docker run -d --env-file .env -p 8000:8000 gtmd
# Settings: .env.example. The image listens on 0.0.0.0:8000 (plain HTTP).
# `docker stop` sends SIGTERM: gtmd drains for up to GTM_SHUTDOWN_TIMEOUT
# (10 s), so give it `docker stop -t 30` / stop_grace_period: 30s.

# --- build -------------------------------------------------------------------
FROM debian:12 AS build
# The same list as BUILD_PKGS in deploy/lib.sh (tests/e2e/test_deploy.py keeps them equal).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        meson ninja-build pkg-config gcc clang libuv1-dev libcurl4-openssl-dev \
        libmbedtls-dev libjwt-dev libjansson-dev libpq-dev node-llhttp libcmocka-dev libgumbo-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY include include
COPY core core
COPY modules modules
COPY subprojects subprojects
COPY tests tests
COPY bench bench
COPY prompts prompts
COPY sql sql
# -Dtests=false: the test suites need openssl, PyJWT and cmocka at configure
# time and are run by deploy/test.sh, not here.
RUN meson setup /build --buildtype=release --prefix=/usr/local -Dtests=false \
 && ninja -C /build \
 && meson install -C /build --no-rebuild \
 && /usr/local/bin/gtmd --version

# --- run ---------------------------------------------------------------------
FROM debian:12
# Runtime libraries only (what gtmd and its modules link: readelf -d), CA
# certificates for outbound HTTPS, curl for the health check.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libuv1 libcurl4 libmbedtls14 libmbedx509-1 libmbedcrypto7 libjansson4 libpq5 libgumbo1 \
        ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gtmd
# bin/gtmd, lib/<multiarch>/gtmd/modules/*.so, share/gtmd/{prompts,sql}
COPY --from=build /usr/local /usr/local
USER gtmd
ENV GTM_LISTEN=0.0.0.0:8000
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${GTM_LISTEN##*:}/health" || exit 1
CMD ["gtmd", "serve"]
