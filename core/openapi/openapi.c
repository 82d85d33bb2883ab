/* The OpenAPI document: core fragment + module fragments, reconciled with
 * the route table so it says what the server serves, not what a module
 * believes it serves. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gtm_paths.h"
#include "http/request.h"
#include "http/response.h"
#include "log.h"
#include "modules/module_host.h"
#include "openapi/openapi.h"
#include "server.h"

extern const char gtm_openapi_core[];
extern const char gtm_docs_html[];

static const struct {
    unsigned bit;
    const char *name;
} methods[] = {
    {GTM_GET, "get"}, {GTM_PUT, "put"}, {GTM_POST, "post"}, {GTM_DELETE, "delete"}, {GTM_PATCH, "patch"},
};

#define N_METHODS (sizeof methods / sizeof methods[0])

static bool is_method(const char *key)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        if (strcmp(key, methods[i].name) == 0) {
            return true;
        }
    }
    return false;
}

static json_t *child_object(json_t *parent, const char *key)
{
    json_t *o = json_object_get(parent, key);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(parent, key, o);
    }
    return o;
}

static const char *mod_openapi(const struct gtm_mod *m)
{
    const struct gtm_module *d = m->desc;
    size_t need = offsetof(struct gtm_module, openapi) + sizeof d->openapi;
    return d->abi_minor >= 3 && d->struct_size >= need ? d->openapi : NULL;
}

static void merge_tags(json_t *doc, json_t *tags)
{
    json_t *have = json_object_get(doc, "tags");
    size_t i, j;
    json_t *t, *u;
    json_array_foreach(tags, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        bool dup = !name;
        json_array_foreach(have, j, u) {
            dup |= name && json_equal(json_object_get(u, "name"), json_object_get(t, "name"));
        }
        if (!dup) {
            json_array_append(have, t);
        }
    }
}

/* One module's fragment into doc; what clashes is left out with a warning. */
/* The answers a hook gives on its own (the auth module's 400 for a token
 * whose subject is not a user id, say) belong to every route it guards; a
 * hook's module lists them under x-gtm-hook-responses. */
static void keep_hook_responses(json_t *doc, const struct gtm_mod *m, json_t *frag)
{
    json_t *hooks = json_object_get(frag, "x-gtm-hook-responses");
    json_t *auth = json_object_get(hooks, "authenticate");
    json_t *admit = json_object_get(hooks, "admit");
    if (m->desc->authenticate && json_is_object(auth)) {
        json_object_set(doc, "x-gtm-hook-authenticate", auth);
    }
    if (m->desc->admit && json_is_object(admit)) {
        json_object_set(doc, "x-gtm-hook-admit", admit);
    }
}

static void merge_fragment(json_t *doc, const struct gtm_mod *m, const char *text, struct openapi_stats *st)
{
    const char *mod = module_name(m);
    json_error_t e;
    json_t *frag = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(frag)) {
        log_msg(LOG_WARN, NULL, mod, "openapi: the module's fragment is not a JSON object (line %d: %s); "
                                     "its routes are described by the host", e.line, frag ? "not an object" : e.text);
        st->conflicts++;
        json_decref(frag);
        return;
    }
    merge_tags(doc, json_object_get(frag, "tags"));
    keep_hook_responses(doc, m, frag);
    json_t *paths = child_object(doc, "paths");
    const char *path, *method;
    json_t *item, *op;
    json_object_foreach(json_object_get(frag, "paths"), path, item) {
        json_t *have = child_object(paths, path);
        json_object_foreach(item, method, op) {
            if (!is_method(method) || !json_is_object(op)) {
                json_object_set(have, method, op);   /* path-level parameters, summary */
                continue;
            }
            if (json_object_get(have, method)) {
                log_msg(LOG_WARN, NULL, mod, "openapi: %s %s is already described by module %s; keeping that",
                        method, path, json_string_value(json_object_get(json_object_get(have, method), "x-gtm-module")));
                st->conflicts++;
                continue;
            }
            json_t *copy = json_deep_copy(op);
            json_object_set_new(copy, "x-gtm-module", json_string(mod));
            json_object_set_new(have, method, copy);
        }
    }
    json_t *schemas = child_object(child_object(doc, "components"), "schemas");
    const char *name;
    json_t *s;
    json_object_foreach(json_object_get(json_object_get(frag, "components"), "schemas"), name, s) {
        json_t *old = json_object_get(schemas, name);
        if (old && !json_equal(old, s)) {
            log_msg(LOG_WARN, NULL, mod, "openapi: schema %s differs from one already defined; keeping the first",
                    name);
            st->conflicts++;
        } else if (!old) {
            json_object_set(schemas, name, s);
        }
    }
    json_decref(frag);
}

static void add_response(json_t *responses, const char *status, const char *ref_name)
{
    if (!json_object_get(responses, status)) {
        char ref[96];
        snprintf(ref, sizeof ref, "#/components/responses/%s", ref_name);
        json_object_set_new(responses, status, json_pack("{ss}", "$ref", ref));
    }
}

/* Every {param} of the pattern declared as a path parameter. */
static void add_path_params(json_t *op, const struct route_entry *e)
{
    json_t *params = json_object_get(op, "parameters");
    if (!json_is_array(params)) {
        params = json_array();
        json_object_set_new(op, "parameters", params);
    }
    for (unsigned i = 0; i < e->n_segs; i++) {
        const char *s = e->segs[i];
        size_t n = strlen(s);
        if (n < 3 || s[0] != '{') {
            continue;
        }
        bool declared = false;
        size_t j;
        json_t *p;
        json_array_foreach(params, j, p) {
            const char *pn = json_string_value(json_object_get(p, "name"));
            const char *in = json_string_value(json_object_get(p, "in"));
            declared |= pn && in && strcmp(in, "path") == 0 && strlen(pn) == n - 2 && strncmp(pn, s + 1, n - 2) == 0;
        }
        if (!declared) {
            json_array_append_new(params, json_pack("{ss#sssbs{ss}}", "name", s + 1, (int)(n - 2), "in", "path",
                                                    "required", 1, "schema", "type", "string"));
        }
    }
    if (json_array_size(params) == 0) {
        json_object_del(op, "parameters");
    }
}

/* What the host enforces for this route, whatever the module wrote. */
static void add_responses(json_t *responses, json_t *more)
{
    const char *status;
    json_t *resp;
    json_object_foreach(more, status, resp) {
        if (!json_object_get(responses, status)) {
            json_object_set(responses, status, resp);
        }
    }
}

static void decorate(json_t *doc, json_t *op, const struct route_entry *e)
{
    json_t *responses = child_object(op, "responses");
    if ((e->flags & GTM_ROUTE_AUTH) && !json_object_get(op, "security")) {
        json_object_set_new(op, "security", json_pack("[{s[]}{s[]}]", "bearerAuth", "apiKeyHeader"));
    }
    if (e->flags & GTM_ROUTE_AUTH) {
        add_response(responses, "401", "Unauthorized");
        add_responses(responses, json_object_get(doc, "x-gtm-hook-authenticate"));
    }
    if (e->flags & GTM_ROUTE_RATELIMIT) {
        add_response(responses, "429", "RateLimited");
        add_responses(responses, json_object_get(doc, "x-gtm-hook-admit"));
        if (e->limit_key) {
            json_object_set_new(op, "x-gtm-rate-limit", json_string(e->limit_key));
        }
    }
    if (json_object_get(op, "requestBody")) {
        add_response(responses, "408", "RequestTimeout");
        add_response(responses, "413", "PayloadTooLarge");
    }
    if (e->mod) {
        add_response(responses, "503", "Unavailable");
    }
    add_response(responses, "500", "InternalError");
    add_path_params(op, e);
}

static json_t *undocumented_op(const struct route_entry *e, const char *method)
{
    char summary[300];
    snprintf(summary, sizeof summary, "%s %s", method, e->pattern);
    for (char *p = summary; *p && *p != ' '; p++) {
        *p = (char)(*p - ('a' - 'A'));
    }
    return json_pack("{sss{s{ss}}sb}", "summary", summary, "responses", "default", "description",
                     "Not described by the module that serves it.", "x-gtm-undocumented", 1);
}

/* Walks the public routes: each (path, method) gets its operation decorated,
 * or one made up; then drops what no route serves. */
static void reconcile(json_t *doc, const struct router *rt, struct openapi_stats *st)
{
    json_t *paths = child_object(doc, "paths");
    json_t *served = json_object();
    for (size_t i = 0; i < rt->n; i++) {
        const struct route_entry *e = &rt->v[i];
        const char *mod = e->mod ? module_name(e->mod) : NULL;
        for (size_t k = 0; k < N_METHODS; k++) {
            if (!(e->methods & methods[k].bit)) {
                continue;
            }
            json_t *item = child_object(paths, e->pattern);
            json_t *op = json_object_get(item, methods[k].name);
            if (!op) {
                log_msg(LOG_WARN, NULL, mod, "openapi: %s %s is routed but not described; the host describes it",
                        methods[k].name, e->pattern);
                st->undocumented++;
                op = undocumented_op(e, methods[k].name);
                if (mod) {
                    json_object_set_new(op, "x-gtm-module", json_string(mod));
                }
                json_object_set_new(item, methods[k].name, op);
            }
            decorate(doc, op, e);
            json_object_set_new(child_object(served, e->pattern), methods[k].name, json_true());
        }
    }
    const char *path, *method;
    json_t *item, *op;
    void *tmp, *tmp2;
    json_object_foreach_safe(paths, tmp, path, item) {
        json_t *ok = json_object_get(served, path);
        json_object_foreach_safe(item, tmp2, method, op) {
            if (is_method(method) && !json_object_get(ok, method)) {
                log_msg(LOG_WARN, NULL, json_string_value(json_object_get(op, "x-gtm-module")),
                        "openapi: %s %s is described but not routed; left out of /openapi.json", method, path);
                st->unrouted++;
                json_object_del(item, method);
            } else if (is_method(method)) {
                st->operations++;
            }
        }
        if (!ok) {
            json_object_del(paths, path);
        }
    }
    json_decref(served);
    json_object_del(doc, "x-gtm-hook-authenticate");
    json_object_del(doc, "x-gtm-hook-admit");
}

int openapi_build(struct server *srv)
{
    struct openapi_stats st = {0};
    json_error_t e;
    json_t *doc = json_loads(gtm_openapi_core, 0, &e);
    if (!doc) {
        log_msg(LOG_ERROR, NULL, NULL, "openapi: the core fragment does not parse: %s", e.text);
        return -1;
    }
    json_object_set_new(child_object(doc, "info"), "version", json_string(GTM_VERSION));
    for (const struct gtm_mod *m = srv->mods; m; m = m->next) {
        const char *text = m->live ? mod_openapi(m) : NULL;
        if (text) {
            merge_fragment(doc, m, text, &st);
        }
    }
    reconcile(doc, &srv->router, &st);
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!out) {
        log_msg(LOG_ERROR, NULL, NULL, "openapi: out of memory serialising the document");
        return -1;
    }
    free(srv->openapi.text);
    srv->openapi.text = out;
    srv->openapi.len = strlen(out);
    /* FNV-1a of the text: the document changes only when modules do */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < srv->openapi.len; i++) {
        h = (h ^ (unsigned char)out[i]) * 1099511628211ull;
    }
    snprintf(srv->openapi.etag, sizeof srv->openapi.etag, "\"%016llx\"", (unsigned long long)h);
    srv->openapi.stats = st;
    if (st.undocumented || st.unrouted || st.conflicts) {
        log_msg(LOG_WARN, NULL, NULL,
                "openapi: %u operations; %u routed but not described, %u described but not routed, %u clashes",
                st.operations, st.undocumented, st.unrouted, st.conflicts);
    }
    return 0;
}

void openapi_free(struct openapi *o)
{
    free(o->text);
    o->text = NULL;
    o->len = 0;
}

static bool etag_matches(struct gtm_req *r, const char *etag)
{
    const char *inm = request_header(r, "if-none-match");
    return inm && strstr(inm, etag) != NULL;
}

static void route_openapi(void *state, struct gtm_req *r)
{
    struct server *srv = state;
    if (!srv->openapi.text) {
        response_error(r, 500, "Internal server error");
        return;
    }
    response_add_header(r, "cache-control", "no-cache");
    response_add_header(r, "etag", srv->openapi.etag);
    if (etag_matches(r, srv->openapi.etag)) {
        response_send(r, 304, NULL, NULL, 0);
        return;
    }
    response_send(r, 200, "application/json", srv->openapi.text, srv->openapi.len);
}

static void route_docs(void *state, struct gtm_req *r)
{
    (void)state;
    /* the page is inline and fetches only /openapi.json from its own origin */
    response_add_header(r, "content-security-policy",
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                        "frame-ancestors 'none'");
    response_add_header(r, "x-content-type-options", "nosniff");
    response_add_header(r, "cache-control", "no-cache");
    response_send(r, 200, "text/html; charset=utf-8", gtm_docs_html, strlen(gtm_docs_html));
}

/* The live route table, for operators and for the test that holds the
 * document to it. */
static void route_admin_routes(void *state, struct gtm_req *r)
{
    struct server *srv = state;
    json_t *list = json_array();
    for (size_t i = 0; i < srv->router.n; i++) {
        const struct route_entry *e = &srv->router.v[i];
        for (size_t k = 0; k < N_METHODS; k++) {
            if (!(e->methods & methods[k].bit)) {
                continue;
            }
            json_t *o = json_pack("{ssssss?sbsb}", "method", methods[k].name, "path", e->pattern, "module",
                                  e->mod ? module_name(e->mod) : NULL, "auth", (e->flags & GTM_ROUTE_AUTH) != 0,
                                  "rate_limited", (e->flags & GTM_ROUTE_RATELIMIT) != 0);
            if (e->limit_key) {
                json_object_set_new(o, "limit_key", json_string(e->limit_key));
            }
            json_array_append_new(list, o);
        }
    }
    const struct openapi_stats *st = &srv->openapi.stats;
    response_json(r, 200, json_pack("{sos{sisisisi}}", "routes", list, "openapi", "operations", st->operations,
                                    "undocumented", st->undocumented, "unrouted", st->unrouted, "conflicts",
                                    st->conflicts));
}

int openapi_routes_add(struct server *srv, char *err, size_t errlen)
{
    if (router_add(&srv->router, "/openapi.json", GTM_GET, route_openapi, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->router, "/docs", GTM_GET, route_docs, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->admin_router, "/admin/routes", GTM_GET, route_admin_routes, srv, 0, NULL, NULL, err,
                   errlen) < 0) {
        return -1;
    }
    return 0;
}
