#include "http/request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gen/gen.h"
#include "http/conn.h"
#include "http/response.h"
#include "log.h"
#include "modules/module_host.h"
#include "server.h"

#define REQ_POOL_MAX 256

static void request_reset(struct gtm_req *r, struct server *srv, struct conn *conn)
{
    r->srv = srv;
    r->conn = conn;
    r->next_free = NULL;
    r->refs = 1;
    r->state = REQ_PARSING;
    r->stage = STAGE_AUTH;
    r->hook_pending = false;
    r->abandoned = false;
    r->hlen = r->hraw = r->tok_start = 0;
    r->parse_error = 0;
    r->url = r->cur_name = NULL;
    r->n_headers = 0;
    buf_reset(&r->body);
    r->method = 0;
    r->method_name = NULL;
    r->http_minor = 1;
    r->keep_alive = r->expect_continue = r->chunked = false;
    r->path = r->query = NULL;
    r->route = NULL;
    r->mod = NULL;
    r->n_params = 0;
    r->user_id = r->role = NULL;
    r->errors = r->body_json = NULL;
    r->body_parsed = false;
    r->origin = NULL;
    r->origin_allowed = false;
    r->status = 0;
    r->close_after = false;
    r->gen_waiter = NULL;
    r->chunked_out = false;
    r->resp_headers = NULL;
    r->resp_bytes = 0;
    r->start_ns = now_ns();
    /* A fresh id now, so even a request that never parses has one. */
    uint64_t n = ++srv->id_counter;
    snprintf(r->id, sizeof r->id, "%02x%02x%02x%02x%02x%02x%02x%02x%016llx", srv->id_seed[0],
             srv->id_seed[1], srv->id_seed[2], srv->id_seed[3], srv->id_seed[4], srv->id_seed[5],
             srv->id_seed[6], srv->id_seed[7], (unsigned long long)n);
}

struct gtm_req *request_new(struct server *srv, struct conn *conn)
{
    struct gtm_req *r = srv->free_reqs;
    if (r) {
        srv->free_reqs = r->next_free;
        srv->n_free_reqs--;
    } else {
        r = malloc(sizeof *r);
        if (!r) {
            return NULL;
        }
        memset(&r->body, 0, sizeof r->body);
        arena_init(&r->arena, r->arena_first, sizeof r->arena_first);
    }
    request_reset(r, srv, conn);
    return r;
}

void request_ref(struct gtm_req *r)
{
    r->refs++;
}

void request_unref(struct gtm_req *r)
{
    if (--r->refs > 0) {
        return;
    }
    struct server *srv = r->srv;
    json_decref(r->errors);
    json_decref(r->body_json);
    r->errors = r->body_json = NULL;
    if (r->mod) {
        module_unref(r->mod);
        r->mod = NULL;
    }
    arena_reset(&r->arena);
    if (r->body.cap > 65536) {
        buf_free(&r->body);
    }
    if (srv->n_free_reqs < REQ_POOL_MAX && !srv->stopped) {
        r->next_free = srv->free_reqs;
        srv->free_reqs = r;
        srv->n_free_reqs++;
    } else {
        buf_free(&r->body);
        free(r);
    }
}

void request_pool_drain(struct server *srv)
{
    while (srv->free_reqs) {
        struct gtm_req *r = srv->free_reqs;
        srv->free_reqs = r->next_free;
        buf_free(&r->body);
        free(r);
    }
    srv->n_free_reqs = 0;
}

void request_detach(struct gtm_req *r)
{
    r->conn = NULL;
    if (r->gen_waiter) {
        /* its client is gone: stop waiting (a run nobody waits for stops) */
        gen_leave(r->gen_waiter);
    }
}

const char *request_header(const struct gtm_req *r, const char *name)
{
    for (unsigned i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into the arena; '+' means space in queries.
 * *outlen (when given) is the decoded length, NULs included. */
static char *decode(struct arena *a, const char *s, size_t n, bool plus_is_space, size_t *outlen)
{
    char *out = arena_alloc(a, n + 1);
    if (!out) {
        return NULL;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            out[j++] = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else if (plus_is_space && s[i] == '+') {
            out[j++] = ' ';
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    if (outlen) {
        *outlen = j;
    }
    return out;
}

const char *request_query(struct gtm_req *r, const char *name)
{
    if (!r->query) {
        return NULL;
    }
    size_t nl = strlen(name);
    const char *p = r->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        char *key = decode(&r->arena, p, klen, true, NULL);
        if (key && strlen(key) == nl && memcmp(key, name, nl) == 0) {
            return eq ? decode(&r->arena, eq + 1, len - klen - 1, true, NULL) : "";
        }
        if (!amp) {
            break;
        }
        p = amp + 1;
    }
    return NULL;
}

const char *request_param(const struct gtm_req *r, const char *name)
{
    for (unsigned i = 0; i < r->n_params; i++) {
        /* names are stored as "{name}" */
        const char *n = r->param_names[i];
        size_t len = strlen(n);
        if (len - 2 == strlen(name) && memcmp(n + 1, name, len - 2) == 0) {
            return r->param_values[i];
        }
    }
    return NULL;
}

/* Several X-Forwarded-For lines are one list (RFC 9110 §5.3): joined in
 * order, so the right-most entry is the last proxy's, whichever line it is on. */
static void join_forwarded_for(struct gtm_req *r)
{
    unsigned first = REQ_MAX_HEADERS, count = 0;
    size_t total = 0;
    for (unsigned i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, "x-forwarded-for") == 0) {
            if (first == REQ_MAX_HEADERS) {
                first = i;
            }
            count++;
            total += strlen(r->headers[i].value) + 2;
        }
    }
    if (count < 2) {
        return;
    }
    char *joined = arena_alloc(&r->arena, total + 1);
    if (!joined) {
        return;
    }
    joined[0] = '\0';
    for (unsigned i = first; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, "x-forwarded-for") == 0) {
            if (joined[0]) {
                strcat(joined, ", ");
            }
            strcat(joined, r->headers[i].value);
        }
    }
    r->headers[first].value = joined;
    /* later lines no longer answer to the name */
    for (unsigned i = first + 1; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, "x-forwarded-for") == 0) {
            r->headers[i].name = "";
        }
    }
}

static bool id_char_ok(int c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@' || c == '/' ||
           c == '+' || c == '=';
}

static void adopt_client_id(struct gtm_req *r)
{
    const char *id = request_header(r, "x-request-id");
    if (!id) {
        return;
    }
    size_t n = strlen(id);
    if (n == 0 || n > REQ_ID_MAX) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!id_char_ok((unsigned char)id[i])) {
            return;
        }
    }
    memcpy(r->id, id, n + 1);
}

/* Splits the target into decoded path and raw query.  -1 when unusable. */
static int split_target(struct gtm_req *r)
{
    const char *u = r->url ? r->url : "";
    if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
        u = strchr(u + 8 - (u[4] == ':'), '/');
        if (!u) {
            u = "/";
        }
    }
    if (u[0] != '/') {
        return -1;
    }
    const char *q = strchr(u, '?');
    size_t plen = q ? (size_t)(q - u) : strlen(u);
    const char *hash = memchr(u, '#', plen);
    if (hash) {
        plen = (size_t)(hash - u);
    }
    /* A percent-encoded NUL would cut the path, or a query value, short: the
     * request would be answered for another target than the one sent. */
    size_t decoded;
    r->path = decode(&r->arena, u, plen, false, &decoded);
    if (!r->path || strlen(r->path) != decoded) {
        return -1;
    }
    if (q) {
        const char *qe = strchr(q + 1, '#');
        r->query = arena_strndup(&r->arena, q + 1, qe ? (size_t)(qe - q - 1) : strlen(q + 1));
        if (!r->query || strstr(r->query, "%00")) {
            return -1;
        }
    }
    return 0;
}

/* --- CORS preflight (Starlette's semantics, JSON on refusal) --- */

static void cors_preflight(struct gtm_req *r)
{
    if (!r->origin_allowed) {
        response_error(r, 400, "Disallowed CORS origin");
        return;
    }
    response_add_header(r, "access-control-allow-methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
    response_add_header(r, "access-control-max-age", "600");
    const char *req_headers = request_header(r, "access-control-request-headers");
    if (req_headers && *req_headers) {
        response_add_header(r, "access-control-allow-headers", req_headers);
    }
    response_send(r, 200, "text/plain; charset=utf-8", "OK", 2);
}

/* --- the pipeline: authenticate, admit, handler --- */

static void request_advance(struct gtm_req *r)
{
    const struct route_entry *e = r->route;
    struct server *srv = r->srv;
    while (r->state == REQ_DISPATCHED) {
        int rc = GTM_HOOK_CONTINUE;
        switch (r->stage) {
        case STAGE_AUTH:
            r->stage = STAGE_ADMIT;
            if (e->flags & GTM_ROUTE_AUTH) {
                if (!srv->auth_mod) {
                    response_error(r, 503, "Authentication is not available: no auth module is loaded");
                    return;
                }
                rc = module_call_authenticate(srv->auth_mod, r);
            }
            break;
        case STAGE_ADMIT:
            r->stage = STAGE_HANDLER;
            if (e->flags & GTM_ROUTE_RATELIMIT) {
                if (!srv->admit_mod) {
                    /* never unlimited by accident: a refused ratelimit module stops these routes */
                    response_error(r, 503, "Rate limiting is not available: no ratelimit module is loaded");
                    return;
                }
                rc = module_call_admit(srv->admit_mod, r, e->limit_key);
            }
            break;
        case STAGE_HANDLER:
            r->stage = STAGE_DONE;
            if (r->mod) {
                module_call_handler(r->mod, e->handler, r);
            } else {
                e->handler(e->core_state, r);
            }
            return;
        default:
            return;
        }
        if (rc == GTM_HOOK_ASYNC) {
            /* held until the module calls hook_done, even if the client leaves */
            r->hook_pending = true;
            request_ref(r);
            return;
        }
        if (rc != GTM_HOOK_CONTINUE) {
            return;   /* the hook answered */
        }
    }
}

void request_hook_done(struct gtm_req *r, int result)
{
    if (!r->hook_pending) {
        log_msg(LOG_ERROR, r->id, NULL, "hook_done without a pending hook ignored");
        return;
    }
    r->hook_pending = false;
    if (r->state == REQ_DISPATCHED && r->conn) {
        if (result == GTM_HOOK_CONTINUE) {
            request_advance(r);
        } else if (result != GTM_HOOK_DONE) {
            response_error(r, 500, "Internal server error");
        }
    }
    request_unref(r);
}

/* A Location is a URI: bytes that cannot stand in one (controls, space,
 * non-ASCII; and in a decoded path also %, ? and #) are percent-encoded, so a
 * client's \f or \xff in the target never reaches the header raw. */
static size_t put_uri(char *out, const char *s, size_t n, bool decoded)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' ||
            (decoded && (c == '%' || c == '?' || c == '#'))) {
            out[j++] = '%';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        } else {
            out[j++] = (char)c;
        }
    }
    return j;
}

/* A Host worth putting in an absolute Location: a name, an address or
 * [v6], with an optional port; anything else gets a relative Location. */
static bool host_ok(const char *host)
{
    if (!host || !*host) {
        return false;
    }
    for (const char *p = host; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr(".-_~:[]", *p)) {
            return false;
        }
    }
    return true;
}

static void redirect_without_slash(struct gtm_req *r)
{
    const char *host = request_header(r, "host");
    const char *scheme = r->conn && r->conn->tls ? "https" : "http";
    /* The raw target keeps the client's own encoding of the path. */
    const char *raw = r->url;
    bool decoded = raw[0] != '/';
    if (decoded) {
        raw = r->path;
    }
    size_t rawlen = decoded ? strlen(raw) : strcspn(raw, "?#");
    while (rawlen > 1 && raw[rawlen - 1] == '/') {
        rawlen--;
    }
    size_t qlen = r->query ? strlen(r->query) : 0;
    size_t cap = 3 * (rawlen + qlen) + (host ? strlen(host) : 0) + 32;
    char *loc = arena_alloc(&r->arena, cap);
    if (!loc) {
        response_error(r, 500, "Internal server error");
        return;
    }
    size_t used = 0;
    if (host_ok(host)) {
        used = (size_t)snprintf(loc, cap, "%s://%s", scheme, host);
    }
    used += put_uri(loc + used, raw, rawlen, decoded);
    if (r->query) {
        loc[used++] = '?';
        used += put_uri(loc + used, r->query, qlen, false);
    }
    loc[used] = '\0';
    response_add_header(r, "location", loc);
    response_send(r, 307, NULL, NULL, 0);
}

void request_dispatch(struct gtm_req *r)
{
    struct server *srv = r->srv;
    r->state = REQ_DISPATCHED;
    srv->n_requests++;
    adopt_client_id(r);
    join_forwarded_for(r);
    const char *origin = request_header(r, "origin");
    if (origin) {
        r->origin = origin;
        r->origin_allowed = server_origin_allowed(srv, origin);
    }
    if (split_target(r) < 0) {
        r->close_after = true;
        response_error(r, 400, "Invalid request target");
        return;
    }
    if (r->method == GTM_OPTIONS && origin && request_header(r, "access-control-request-method")) {
        cors_preflight(r);
        return;
    }
    struct route_match m;
    const struct router *routes = r->conn && r->conn->admin ? &srv->admin_router : &srv->router;
    int res = router_match(routes, r->path, r->method, &m);
    if (res == ROUTE_FOUND) {
        /* strings the table owns are copied; the module's stay mapped while we hold it */
        r->route_copy = *m.entry;
        r->route_copy.pattern = arena_strdup(&r->arena, m.entry->pattern);
        r->route_copy.n_segs = 0;
        memset(r->route_copy.segs, 0, sizeof r->route_copy.segs);
        r->route = &r->route_copy;
        if (m.entry->mod) {
            r->mod = m.entry->mod;
            module_ref(r->mod);
        }
        r->n_params = m.n_params;
        for (unsigned i = 0; i < m.n_params; i++) {
            r->param_names[i] = arena_strdup(&r->arena, m.names[i]);
            r->param_values[i] = arena_strndup(&r->arena, m.values[i], m.value_lens[i]);
        }
        request_advance(r);
        return;
    }
    if (res == ROUTE_METHOD) {
        char allow[96];
        response_add_header(r, "allow", router_allow_text(m.allow, allow, sizeof allow));
        response_error(r, 405, "Method Not Allowed");
        return;
    }
    size_t n = strlen(r->path);
    if (n > 1 && r->path[n - 1] == '/') {
        char *trimmed = arena_strdup(&r->arena, r->path);
        while (n > 1 && trimmed[n - 1] == '/') {
            trimmed[--n] = '\0';
        }
        struct route_match m2;
        if (router_match(routes, trimmed, r->method, &m2) != ROUTE_NONE) {
            redirect_without_slash(r);
            return;
        }
    }
    response_error(r, 404, "Not Found");
}
