#include "http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    unsigned bit;
    const char *name;
} method_names[] = {
    {GTM_GET, "GET"},     {GTM_HEAD, "HEAD"},     {GTM_POST, "POST"},       {GTM_PUT, "PUT"},
    {GTM_PATCH, "PATCH"}, {GTM_DELETE, "DELETE"}, {GTM_OPTIONS, "OPTIONS"},
};

unsigned router_method_bit(const char *name)
{
    for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++) {
        if (strcmp(name, method_names[i].name) == 0) {
            return method_names[i].bit;
        }
    }
    return 0;
}

const char *router_allow_text(unsigned methods, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    if (methods & GTM_GET) {
        methods |= GTM_HEAD;
    }
    for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++) {
        if (methods & method_names[i].bit) {
            int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", method_names[i].name);
            if (n < 0 || (size_t)n >= len - used) {
                break;
            }
            used += (size_t)n;
        }
    }
    return buf;
}

static int is_param(const char *seg)
{
    size_t n = strlen(seg);
    return n > 2 && seg[0] == '{' && seg[n - 1] == '}';
}

static void entry_free(struct route_entry *e)
{
    free(e->pattern);
    for (unsigned i = 0; i < e->n_segs; i++) {
        free(e->segs[i]);
    }
}

static int split_pattern(struct route_entry *e, const char *pattern, char *err, size_t errlen)
{
    if (pattern[0] != '/') {
        snprintf(err, errlen, "route '%s' does not start with /", pattern);
        return -1;
    }
    const char *p = pattern + 1;
    unsigned params = 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || e->n_segs == ROUTE_MAX_SEGS) {
            snprintf(err, errlen, "route '%s' has an empty segment or too many", pattern);
            return -1;
        }
        e->segs[e->n_segs] = strndup(p, len);
        if (!e->segs[e->n_segs]) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        params += is_param(e->segs[e->n_segs]);
        e->n_segs++;
        if (!slash) {
            break;
        }
        p = slash + 1;
        if (!*p) {
            snprintf(err, errlen, "route '%s' ends with /", pattern);
            return -1;
        }
    }
    if (params > ROUTE_MAX_PARAMS) {
        snprintf(err, errlen, "route '%s' has more than %d parameters", pattern, ROUTE_MAX_PARAMS);
        return -1;
    }
    return 0;
}

/* Same shape: the same static segments and parameters at the same places. */
static int same_shape(const struct route_entry *a, const struct route_entry *b)
{
    if (a->n_segs != b->n_segs) {
        return 0;
    }
    for (unsigned i = 0; i < a->n_segs; i++) {
        int pa = is_param(a->segs[i]), pb = is_param(b->segs[i]);
        if (pa != pb || (!pa && strcmp(a->segs[i], b->segs[i]) != 0)) {
            return 0;
        }
    }
    return 1;
}

int router_add(struct router *r, const char *pattern, unsigned methods, gtm_handler_fn handler,
               void *core_state, unsigned flags, const char *limit_key, struct gtm_mod *mod,
               char *err, size_t errlen)
{
    struct route_entry e = {0};
    if (!pattern || !handler || !methods) {
        snprintf(err, errlen, "route '%s' lacks a pattern, handler or methods", pattern ? pattern : "(null)");
        return -1;
    }
    if (split_pattern(&e, pattern, err, errlen) < 0) {
        entry_free(&e);
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (same_shape(&r->v[i], &e) && (r->v[i].methods & methods)) {
            snprintf(err, errlen, "route %s clashes with %s already routed", pattern, r->v[i].pattern);
            entry_free(&e);
            return -1;
        }
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        struct route_entry *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            entry_free(&e);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        r->v = v;
        r->cap = cap;
    }
    e.pattern = strdup(pattern);
    e.methods = methods;
    e.handler = handler;
    e.core_state = core_state;
    e.flags = flags;
    e.limit_key = limit_key;
    e.mod = mod;
    r->v[r->n++] = e;
    return 0;
}

void router_remove_module(struct router *r, struct gtm_mod *mod)
{
    size_t j = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].mod == mod) {
            entry_free(&r->v[i]);
        } else {
            r->v[j++] = r->v[i];
        }
    }
    r->n = j;
}

/* Matches path segments against e; returns the number of static segments
 * matched (for precedence) or -1. */
static int match_entry(const struct route_entry *e, const char *const *segs, const size_t *lens,
                       unsigned n, struct route_match *m)
{
    if (e->n_segs != n) {
        return -1;
    }
    int statics = 0;
    for (unsigned i = 0; i < n; i++) {
        if (is_param(e->segs[i])) {
            if (lens[i] == 0) {
                return -1;
            }
            continue;
        }
        if (strlen(e->segs[i]) != lens[i] || memcmp(e->segs[i], segs[i], lens[i]) != 0) {
            return -1;
        }
        statics++;
    }
    if (m) {
        m->n_params = 0;
        for (unsigned i = 0; i < n; i++) {
            if (is_param(e->segs[i])) {
                m->names[m->n_params] = e->segs[i];
                m->values[m->n_params] = segs[i];
                m->value_lens[m->n_params] = lens[i];
                m->n_params++;
            }
        }
    }
    return statics;
}

int router_match(const struct router *r, const char *path, unsigned method, struct route_match *m)
{
    const char *segs[ROUTE_MAX_SEGS];
    size_t lens[ROUTE_MAX_SEGS];
    unsigned n = 0;
    memset(m, 0, sizeof *m);
    if (path[0] != '/') {
        return ROUTE_NONE;
    }
    const char *p = path + 1;
    if (*p) {
        for (;;) {
            if (n == ROUTE_MAX_SEGS) {
                return ROUTE_NONE;
            }
            const char *slash = strchr(p, '/');
            segs[n] = p;
            lens[n] = slash ? (size_t)(slash - p) : strlen(p);
            n++;
            if (!slash) {
                break;
            }
            p = slash + 1;
        }
    }
    unsigned want = method == GTM_HEAD ? GTM_GET : method;
    int best = -1;
    const struct route_entry *best_e = NULL;
    unsigned allow = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct route_entry *e = &r->v[i];
        int statics = match_entry(e, segs, lens, n, NULL);
        if (statics < 0) {
            continue;
        }
        if (e->methods & want) {
            if (statics > best) {
                best = statics;
                best_e = e;
            }
        } else {
            allow |= e->methods;
        }
    }
    if (best_e) {
        match_entry(best_e, segs, lens, n, m);
        m->entry = best_e;
        return ROUTE_FOUND;
    }
    if (allow) {
        m->allow = allow;
        return ROUTE_METHOD;
    }
    return ROUTE_NONE;
}

void router_free(struct router *r)
{
    for (size_t i = 0; i < r->n; i++) {
        entry_free(&r->v[i]);
    }
    free(r->v);
    r->v = NULL;
    r->n = r->cap = 0;
}
