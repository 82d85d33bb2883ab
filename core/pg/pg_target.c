/* What to connect to: the conninfo parsed once by pg_pool_new into keyword and
 * value arrays for PQconnectStartParams, and a plan for looking up host names
 * ourselves.  libpq resolves a host name with a blocking getaddrinfo unless
 * hostaddr is given, so when any host is a name the pool looks it up with
 * uv_getaddrinfo before each attempt and passes the addresses as hostaddr,
 * keeping host for TLS verification and .pgpass. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg/pg_internal.h"

bool pg_host_is_ip(const char *host) {
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

bool pg_host_is_name(const char *host) {
    /* '/' is a unix-socket directory, '@' an abstract unix socket */
    return host[0] != '\0' && host[0] != '/' && host[0] != '@' && !pg_host_is_ip(host);
}

/* ---- messages ------------------------------------------------------------ */

void pg_message_clean(char *dst, size_t dstlen, const char *src, const char *password) {
    if (dstlen == 0)
        return;
    if (!src)
        src = "";
    size_t srclen = strlen(src);
    char *line = malloc(srclen * 2 + 1); /* "\n" may become "; " */
    if (!line) {
        snprintf(dst, dstlen, "%s", "out of memory");
        return;
    }
    /* libpq's multi-line errors: a line break starts a new sentence ("; "),
     * an indented line continues one (" ") */
    size_t n = 0;
    bool gap = false, new_line = false;
    for (const unsigned char *s = (const unsigned char *)src; *s; s++) {
        if (*s == '\n') {
            new_line = s[1] != '\t' && s[1] != ' ';
            gap = true;
            continue;
        }
        if (*s < 0x20 || *s == ' ' || *s == 0x7f) {
            gap = true;
            continue;
        }
        if (gap && n > 0) {
            if (new_line)
                line[n++] = ';';
            line[n++] = ' ';
        }
        gap = new_line = false;
        line[n++] = (char)*s;
    }
    line[n] = '\0';

    /* libpq never puts the password in a message; this is the second belt.
     * Very short passwords are left alone: redacting them would shred text. */
    size_t pwlen = password ? strlen(password) : 0;
    size_t out = 0;
    bool cut = false;
    for (size_t i = 0; i < n && !cut;) {
        const char *piece = &line[i];
        size_t len = 1;
        if (pwlen >= 3 && strncmp(&line[i], password, pwlen) == 0) {
            piece = "***";
            len = 3;
            i += pwlen;
        } else {
            i++;
        }
        if (out + len > dstlen - 1) {
            cut = true;
            break;
        }
        memcpy(dst + out, piece, len);
        out += len;
    }
    if (cut) {
        /* never leave half a UTF-8 sequence at the end */
        while (out > 0 && ((unsigned char)dst[out - 1] & 0x80)) {
            unsigned char b = (unsigned char)dst[out - 1];
            out--;
            if ((b & 0xC0) == 0xC0)
                break;
        }
    }
    dst[out] = '\0';
    free(line);
}

/* libpq's parse errors quote what they choke on, which can be the password
 * ("invalid percent-encoded token"); only quoted option names survive. */
static void scrub_parse_error(char *dst, size_t dstlen, const char *msg) {
    size_t len = strlen(msg);
    char *out = malloc(len * 3 + 1); /* "" grows to "..." at most */
    if (!out) {
        snprintf(dst, dstlen, "%s", "invalid conninfo");
        return;
    }
    PQconninfoOption *known = PQconninfoParse("", NULL);
    size_t n = 0;
    const char *s = msg;
    while (*s) {
        const char *close = *s == '"' ? strchr(s + 1, '"') : NULL;
        if (!close) {
            out[n++] = *s++;
            continue;
        }
        size_t qlen = (size_t)(close - s - 1);
        bool keep = false;
        for (PQconninfoOption *o = known; o && o->keyword; o++) {
            if (strlen(o->keyword) == qlen && strncmp(o->keyword, s + 1, qlen) == 0) {
                keep = true;
                break;
            }
        }
        if (keep) {
            memcpy(out + n, s, qlen + 2);
            n += qlen + 2;
        } else {
            memcpy(out + n, "\"...\"", 5);
            n += 5;
        }
        s = close + 1;
    }
    out[n] = '\0';
    PQconninfoFree(known);
    char clean[PG_MESSAGE_MAX];
    pg_message_clean(clean, sizeof clean, out, NULL);
    snprintf(dst, dstlen, "invalid conninfo: %s", clean);
    free(out);
}

/* ---- parsing ------------------------------------------------------------- */

/* SQLAlchemy writes postgresql+psycopg2://; libpq knows only the bare schemes. */
static char *normalize_conninfo(const char *conninfo) {
    while (isspace((unsigned char)*conninfo))
        conninfo++;
    const char *sep = strstr(conninfo, "://");
    const char *plus = sep ? memchr(conninfo, '+', (size_t)(sep - conninfo)) : NULL;
    if (plus) {
        size_t scheme = (size_t)(plus - conninfo);
        if ((scheme == 8 && strncasecmp(conninfo, "postgres", 8) == 0) ||
            (scheme == 10 && strncasecmp(conninfo, "postgresql", 10) == 0)) {
            size_t rest = strlen(sep);
            char *out = malloc(10 + rest + 1);
            if (out) {
                memcpy(out, "postgresql", 10);
                memcpy(out + 10, sep, rest + 1);
            }
            return out;
        }
    }
    return strdup(conninfo);
}

static const char *option_value(const PQconninfoOption *opts, const char *keyword) {
    for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, keyword) == 0)
            return o->val && o->val[0] ? o->val : NULL;
    }
    return NULL;
}

/* Splits a comma-separated list into n strdup'ed items; NULL when out of memory. */
static char **split_list(const char *list, size_t *n) {
    size_t count = 1;
    for (const char *s = list; *s; s++)
        count += *s == ',';
    char **items = calloc(count, sizeof *items);
    if (!items)
        return NULL;
    const char *s = list;
    for (size_t i = 0; i < count; i++) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        items[i] = strndup(s, len);
        if (!items[i]) {
            for (size_t j = 0; j < i; j++)
                free(items[j]);
            free(items);
            return NULL;
        }
        s = end ? end + 1 : s + len;
    }
    *n = count;
    return items;
}

static void free_list(char **items, size_t n) {
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

/* Decides whether hosts get a hostaddr from us (names looked up, IPs as they
 * are), and fills hosts/ports if so.
 * Environment defaults (PGHOST, PGPORT) count, as they would for libpq. */
static int plan_lookup(struct pg_target *t, const PQconninfoOption *opts, const PQconninfoOption *defaults) {
    t->resolve = false;
    if (option_value(opts, "service"))
        return 0; /* the service file's hosts are libpq's business */
    if (option_value(opts, "hostaddr") || option_value(defaults, "hostaddr"))
        return 0;
    const char *host = option_value(opts, "host");
    if (!host)
        host = option_value(defaults, "host");
    if (!host)
        return 0;
    const char *port = option_value(opts, "port");
    if (!port)
        port = option_value(defaults, "port");

    size_t nhosts = 0, nports = 0;
    char **hosts = split_list(host, &nhosts);
    char **ports = port ? split_list(port, &nports) : NULL;
    if (!hosts || (port && !ports)) {
        free_list(hosts, nhosts);
        free_list(ports, nports);
        return -1;
    }
    /* IPs go through the plan too: as hostaddr libpq parses them with
     * AI_NUMERICHOST instead of handing them to a general getaddrinfo */
    bool any_tcp = false;
    for (size_t i = 0; i < nhosts; i++)
        any_tcp |= pg_host_is_name(hosts[i]) || pg_host_is_ip(hosts[i]);
    if (!any_tcp || (nports > 1 && nports != nhosts)) {
        /* only unix sockets, or a mismatch libpq will report itself */
        free_list(hosts, nhosts);
        free_list(ports, nports);
        return 0;
    }
    char **per_host = calloc(nhosts, sizeof *per_host);
    if (!per_host)
        goto oom;
    for (size_t i = 0; i < nhosts; i++) {
        per_host[i] = strdup(nports == 0 ? "" : ports[nports == 1 ? 0 : i]);
        if (!per_host[i]) {
            free_list(per_host, i);
            goto oom;
        }
    }
    free_list(ports, nports);
    t->resolve = true;
    t->hosts = hosts;
    t->ports = per_host;
    t->nhosts = nhosts;
    return 0;
oom:
    free_list(hosts, nhosts);
    free_list(ports, nports);
    return -1;
}

int pg_target_parse(struct pg_target *t, const char *conninfo, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    char *normalized = normalize_conninfo(conninfo ? conninfo : "");
    if (!normalized) {
        snprintf(err, errlen, "%s", "out of memory");
        return -1;
    }
    char *parse_error = NULL;
    PQconninfoOption *opts = PQconninfoParse(normalized, &parse_error);
    free(normalized);
    if (!opts) {
        scrub_parse_error(err, errlen, parse_error ? parse_error : "out of memory");
        PQfreemem(parse_error);
        return -1;
    }
    PQconninfoOption *defaults = PQconndefaults();

    const char *password = option_value(opts, "password");
    if (!password)
        password = option_value(defaults, "password");
    if (password && !(t->password = strdup(password)))
        goto oom;
    if (plan_lookup(t, opts, defaults) != 0)
        goto oom;

    size_t count = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        count++;
    t->keywords = calloc(count + 4, sizeof *t->keywords);
    t->values = calloc(count + 4, sizeof *t->values);
    if (!t->keywords || !t->values)
        goto oom;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (t->resolve &&
            (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 || strcmp(o->keyword, "port") == 0))
            continue;
        t->keywords[t->nbase] = strdup(o->keyword);
        t->values[t->nbase] = strdup(o->val);
        t->nbase++;
        if (!t->keywords[t->nbase - 1] || !t->values[t->nbase - 1])
            goto oom;
    }
    PQconninfoFree(opts);
    PQconninfoFree(defaults);
    return 0;
oom:
    PQconninfoFree(opts);
    PQconninfoFree(defaults);
    pg_target_free(t);
    snprintf(err, errlen, "%s", "out of memory");
    return -1;
}

void pg_target_free(struct pg_target *t) {
    for (size_t i = 0; i < t->nbase; i++) {
        free((char *)t->keywords[i]);
        free((char *)t->values[i]);
    }
    free(t->keywords);
    free(t->values);
    free_list(t->hosts, t->nhosts);
    free_list(t->ports, t->nhosts);
    free(t->password);
    memset(t, 0, sizeof *t);
}
