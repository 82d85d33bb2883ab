#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gtm_paths.h"
#include "log.h"

static const char *default_cors[] = {"http://localhost:5175", "https://blossomer-gtm-app.onrender.com"};

int config_parse_uint(const char *text, unsigned long max, unsigned long *out)
{
    if (!text || !*text || *text == '-' || *text == '+') {
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

int config_parse_size(const char *text, size_t *out)
{
    if (!text || !*text || *text == '-' || *text == '+') {
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text) {
        return -1;
    }
    unsigned long long mult = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mult = 1024ULL; break;
        case 'm': case 'M': mult = 1024ULL * 1024; break;
        case 'g': case 'G': mult = 1024ULL * 1024 * 1024; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I') {
            end++;
        }
        if (*end == 'b' || *end == 'B') {
            end++;
        }
        if (*end) {
            return -1;
        }
    }
    if (v > SIZE_MAX / mult) {
        return -1;
    }
    *out = (size_t)(v * mult);
    return 0;
}

int config_parse_seconds(const char *text, double *out)
{
    if (!text || !*text) {
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v <= 0 || v > 86400.0 * 365) {
        return -1;
    }
    *out = v;
    return 0;
}

int config_parse_listen(const char *text, struct listen_spec *out)
{
    memset(out, 0, sizeof *out);
    if (!text || strlen(text) >= sizeof out->text) {
        return -1;
    }
    char host[128];
    const char *port_s;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            return -1;
        }
        size_t hl = (size_t)(close - text - 1);
        if (hl == 0 || hl >= sizeof host) {
            return -1;
        }
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon) {
            return -1;
        }
        size_t hl = (size_t)(colon - text);
        if (hl >= sizeof host) {
            return -1;
        }
        memcpy(host, text, hl);
        host[hl] = '\0';
        port_s = colon + 1;
        if (hl == 0) {
            strcpy(host, "0.0.0.0");
        }
    }
    unsigned long port;
    if (config_parse_uint(port_s, 65535, &port) < 0) {
        return -1;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->addr;
    if (strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
    } else {
        return -1;
    }
    snprintf(out->text, sizeof out->text, "%s", text);
    out->set = true;
    out->fd = -1;
    return 0;
}

static int running_from_build_tree(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        return 0;
    }
    exe[n] = '\0';
    size_t rl = strlen(GTM_BUILD_ROOT);
    return strncmp(exe, GTM_BUILD_ROOT, rl) == 0 && exe[rl] == '/';
}

const char *config_default_module_dir(void)
{
    return running_from_build_tree() ? GTM_BUILD_MODULE_DIR : GTM_INSTALL_MODULE_DIR;
}

const char *config_default_data_dir(const char *sub)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", running_from_build_tree() ? GTM_SOURCE_ROOT : GTM_INSTALL_DATA_DIR, sub);
    return path;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

static int env_seconds(const char *name, double dflt, double *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return 0;
    }
    if (config_parse_seconds(v, out) < 0) {
        FAIL("%s: expected a positive number of seconds (e.g. 10 or 0.5), got '%s'", name, v);
    }
    return 0;
}

static int split_origins(struct config *c, const char *text, char *err, size_t errlen)
{
    size_t n = 1;
    for (const char *p = text; *p; p++) {
        n += *p == ',';
    }
    c->cors_origins = calloc(n, sizeof *c->cors_origins);
    if (!c->cors_origins) {
        FAIL("CORS_ORIGINS: out of memory");
    }
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++, len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '/')) {
            len--;
        }
        if (len) {
            if (!(len == 1 && *p == '*') && !(len > 7 && (strncmp(p, "http://", 7) == 0 ||
                                                         strncmp(p, "https://", 8) == 0))) {
                FAIL("CORS_ORIGINS: '%.*s' is not an origin like https://app.example.com (or *)",
                     (int)len, p);
            }
            c->cors_origins[c->n_cors_origins] = strndup(p, len);
            if (!c->cors_origins[c->n_cors_origins]) {
                FAIL("CORS_ORIGINS: out of memory");
            }
            c->n_cors_origins++;
        }
        if (!e) {
            break;
        }
        p = e + 1;
    }
    return 0;
}

int config_load(struct config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->listen.fd = c->tls_listen.fd = c->admin_listen.fd = -1;
    const char *v;

    v = getenv("GTM_LISTEN");
    if (!v || !*v) {
        v = "127.0.0.1:8000";
    }
    if (config_parse_listen(v, &c->listen) < 0) {
        FAIL("GTM_LISTEN: expected host:port (e.g. 127.0.0.1:8000 or [::1]:8000), got '%s'", v);
    }

    v = getenv("GTM_ADMIN_LISTEN");
    if (!v || !*v) {
        v = "127.0.0.1:9000";
    }
    if (strcmp(v, "off") != 0 && config_parse_listen(v, &c->admin_listen) < 0) {
        FAIL("GTM_ADMIN_LISTEN: expected host:port (default 127.0.0.1:9000) or off, got '%s'", v);
    }

    v = getenv("GTM_TLS_LISTEN");
    if (v && *v) {
        if (config_parse_listen(v, &c->tls_listen) < 0) {
            FAIL("GTM_TLS_LISTEN: expected host:port (e.g. 127.0.0.1:8443), got '%s'", v);
        }
        c->tls_cert = getenv("GTM_TLS_CERT");
        c->tls_key = getenv("GTM_TLS_KEY");
        if (!c->tls_cert || !*c->tls_cert) {
            FAIL("GTM_TLS_CERT: required when GTM_TLS_LISTEN is set (a PEM certificate file)");
        }
        if (!c->tls_key || !*c->tls_key) {
            FAIL("GTM_TLS_KEY: required when GTM_TLS_LISTEN is set (a PEM private key file)");
        }
    }

    unsigned long u;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cpus < 1 ? 1 : cpus > 256 ? 256 : (int)cpus;
    v = getenv("GTM_WORKERS");
    if (v && *v) {
        if (config_parse_uint(v, 256, &u) < 0 || u == 0) {
            FAIL("GTM_WORKERS: expected a number of worker processes from 1 to 256, got '%s'", v);
        }
        c->workers = (int)u;
    }

    v = getenv("GTM_MODULE_DIR");
    c->module_dir = v && *v ? v : config_default_module_dir();

    v = getenv("GTM_SQL_DIR");
    c->sql_dir = v && *v ? v : strdup(config_default_data_dir("sql"));
    c->sql_dir_owned = !(v && *v);

    v = getenv("GTM_PROMPT_DIR");
    c->prompt_dir = v && *v ? v : strdup(config_default_data_dir("prompts"));
    c->prompt_dir_owned = !(v && *v);

    v = getenv("DATABASE_URL");
    if (v && *v) {
        if (strncmp(v, "postgres", 8) != 0 && !strchr(v, '=')) {
            FAIL("DATABASE_URL: expected postgresql://user:password@host:port/dbname (or libpq key=value), "
                 "got something else");
        }
        c->database_url = v;
    }

    c->pg_pool_size = 4;
    v = getenv("GTM_PG_POOL_SIZE");
    if (v && *v) {
        if (config_parse_uint(v, 256, &u) < 0 || u == 0) {
            FAIL("GTM_PG_POOL_SIZE: expected a number of connections from 1 to 256, got '%s'", v);
        }
        c->pg_pool_size = (unsigned)u;
    }

    c->max_body = 1024 * 1024;
    v = getenv("GTM_MAX_BODY");
    if (v && *v) {
        if (config_parse_size(v, &c->max_body) < 0 || c->max_body == 0 ||
            c->max_body > (size_t)1 << 30) {
            FAIL("GTM_MAX_BODY: expected a size from 1 byte to 1G (e.g. 1048576 or 1M), got '%s'", v);
        }
    }

    c->max_connections = 16384;
    v = getenv("GTM_MAX_CONNECTIONS");
    if (v && *v) {
        if (config_parse_uint(v, 1000000, &u) < 0 || u == 0) {
            FAIL("GTM_MAX_CONNECTIONS: expected a number from 1 to 1000000, got '%s'", v);
        }
        c->max_connections = (unsigned)u;
    }

    if (env_seconds("GTM_SHUTDOWN_TIMEOUT", 10, &c->shutdown_timeout, err, errlen) < 0 ||
        env_seconds("GTM_HEADER_TIMEOUT", 10, &c->header_timeout, err, errlen) < 0 ||
        env_seconds("GTM_BODY_TIMEOUT", 30, &c->body_timeout, err, errlen) < 0 ||
        env_seconds("GTM_IDLE_TIMEOUT", 60, &c->idle_timeout, err, errlen) < 0 ||
        env_seconds("GTM_GENERATE_TIMEOUT", 120, &c->generate_timeout, err, errlen) < 0 ||
        env_seconds("GTM_MODULE_DRAIN_TIMEOUT", 180, &c->module_drain_timeout, err, errlen) < 0) {
        return -1;
    }
    v = getenv("GTM_DRAIN_DELAY");
    if (v && strcmp(v, "0") == 0) {
        c->drain_delay = 0;
    } else if (env_seconds("GTM_DRAIN_DELAY", 0, &c->drain_delay, err, errlen) < 0) {
        return -1;
    } else if (c->drain_delay > 300) {
        FAIL("GTM_DRAIN_DELAY: at most 300 seconds, got '%s'", v);
    }

    c->log_level = LOG_INFO;
    v = getenv("GTM_LOG_LEVEL");
    if (v && *v) {
        c->log_level = log_level_from_name(v);
        if (c->log_level < 0) {
            FAIL("GTM_LOG_LEVEL: expected debug, info, warn or error, got '%s'", v);
        }
    }

    v = getenv("CORS_ORIGINS");
    if (v && *v) {
        if (split_origins(c, v, err, errlen) < 0) {
            return -1;
        }
    } else {
        c->cors_origins = calloc(2, sizeof *c->cors_origins);
        if (!c->cors_origins) {
            FAIL("CORS_ORIGINS: out of memory");
        }
        for (size_t i = 0; i < 2; i++) {
            c->cors_origins[i] = strdup(default_cors[i]);
        }
        c->n_cors_origins = 2;
    }
    return 0;
}

void config_free(struct config *c)
{
    if (c->prompt_dir_owned) {
        free((char *)c->prompt_dir);
        c->prompt_dir = NULL;
        c->prompt_dir_owned = false;
    }
    if (c->sql_dir_owned) {
        free((char *)c->sql_dir);
        c->sql_dir = NULL;
        c->sql_dir_owned = false;
    }
    for (size_t i = 0; i < c->n_cors_origins; i++) {
        free(c->cors_origins[i]);
    }
    free(c->cors_origins);
    c->cors_origins = NULL;
    c->n_cors_origins = 0;
}

int config_load_cli(struct config *c)
{
    char err[1024];
    if (config_load(c, err, sizeof err) < 0) {
        fprintf(stderr, "gtmd: %s\n", err);
        config_free(c);
        return 2;
    }
    return 0;
}
