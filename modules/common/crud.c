#include "crud.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t crud_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        n += ((unsigned char)*s & 0xc0) != 0x80;
    }
    return n;
}

bool crud_is_uuid(const char *s)
{
    if (strlen(s) != 36) {
        return false;
    }
    for (int i = 0; i < 36; i++) {
        char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-') {
                return false;
            }
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return false;
        }
    }
    return true;
}

static json_t *loc_body(const char *key)
{
    return json_pack("[ss]", "body", key);
}

/* Postgres stores no NUL: a text parameter would be cut at it (a C string) and
 * a jsonb string holding \u0000 is refused (a 500).  The first string in v
 * holding one, with its path below v prepended to *path, or NULL. */
static json_t *find_nul(json_t *v, json_t *path)
{
    json_t *hit = NULL, *item;
    if (json_is_string(v)) {
        return memchr(json_string_value(v), '\0', json_string_length(v)) ? v : NULL;
    }
    if (json_is_object(v)) {
        const char *k;
        json_object_foreach(v, k, item) {
            if ((hit = find_nul(item, path))) {
                json_array_insert_new(path, 0, json_string(k));
                return hit;
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_array_foreach(v, i, item) {
            if ((hit = find_nul(item, path))) {
                json_array_insert_new(path, 0, json_integer((json_int_t)i));
                return hit;
            }
        }
    }
    return NULL;
}

/* Records a 422 value_error and returns true when v (the body's key, or
 * below it) holds a NUL character. */
static bool refuse_nul(const struct crud_ctx *c, struct gtm_req *req, const char *key, json_t *v)
{
    json_t *path = json_array();
    json_t *hit = path ? find_nul(v, path) : NULL;
    if (!hit) {
        json_decref(path);
        return false;
    }
    json_t *loc = loc_body(key);
    json_array_extend(loc, path);
    json_decref(path);
    c->host->add_error(req, "value_error", loc, "Value error, a NUL character (\\u0000) cannot be stored",
                       json_incref(hit), json_pack("{ss}", "error", "a NUL character (\\u0000) cannot be stored"));
    return true;
}

json_t *crud_body_object(const struct crud_ctx *c, struct gtm_req *req)
{
    json_t *body = c->host->body_json(req);
    if (body && !json_is_object(body)) {
        c->host->add_error(req, "model_attributes_type", json_pack("[s]", "body"),
                           "Input should be a valid dictionary or object to extract fields from",
                           json_incref(body), NULL);
        return NULL;
    }
    return body;
}

static void missing(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key)
{
    /* pydantic reports the whole object as the input of a missing field */
    c->host->add_error(req, "missing", loc_body(key), "Field required", json_incref(body), NULL);
}

const char *crud_field_str(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key,
                           bool required, bool nullable, size_t max_chars, bool *present)
{
    json_t *v = json_object_get(body, key);
    if (present) {
        *present = v != NULL;
    }
    if (!v) {
        if (required) {
            missing(c, req, body, key);
        }
        return NULL;
    }
    if (json_is_null(v) && nullable) {
        return NULL;
    }
    if (!json_is_string(v)) {
        c->host->add_error(req, "string_type", loc_body(key), "Input should be a valid string", json_incref(v),
                           NULL);
        return NULL;
    }
    const char *s = json_string_value(v);
    if (refuse_nul(c, req, key, v)) {
        return NULL;
    }
    if (max_chars && crud_utf8_len(s) > max_chars) {
        char msg[96];
        snprintf(msg, sizeof msg, "String should have at most %zu characters", max_chars);
        c->host->add_error(req, "string_too_long", loc_body(key), msg, json_incref(v),
                           json_pack("{sI}", "max_length", (json_int_t)max_chars));
        return NULL;
    }
    return s;
}

bool crud_field_obj(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key, bool required,
                    bool nullable, json_t **out, bool *present)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (present) {
        *present = v != NULL;
    }
    if (!v) {
        if (required) {
            missing(c, req, body, key);
            return false;
        }
        return true;
    }
    if (json_is_null(v) && nullable) {
        return true;
    }
    if (!json_is_object(v)) {
        c->host->add_error(req, "dict_type", loc_body(key), "Input should be a valid dictionary", json_incref(v),
                           NULL);
        return false;
    }
    if (refuse_nul(c, req, key, v)) {
        return false;
    }
    *out = v;
    return true;
}

bool crud_field_str_list(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key,
                         bool required, bool nullable, json_t **out)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v) {
        if (required) {
            missing(c, req, body, key);
            return false;
        }
        return true;
    }
    if (json_is_null(v) && nullable) {
        return true;
    }
    if (!json_is_array(v)) {
        c->host->add_error(req, "list_type", loc_body(key), "Input should be a valid list", json_incref(v), NULL);
        return false;
    }
    bool ok = true;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        if (!json_is_string(item)) {
            c->host->add_error(req, "string_type", json_pack("[ssI]", "body", key, (json_int_t)i),
                               "Input should be a valid string", json_incref(item), NULL);
            ok = false;
        }
    }
    if (ok && refuse_nul(c, req, key, v)) {
        ok = false;
    }
    *out = ok ? v : NULL;
    return ok;
}

const char *crud_user(const struct crud_ctx *c, struct gtm_req *req)
{
    const char *user = c->host->req_user(req);
    if (!user) {
        c->host->respond_error(req, 401, "Missing or invalid Authorization header");
        return NULL;
    }
    return user;
}

void crud_respond_row(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_result *res, int status,
                      const char *not_found)
{
    const struct gtm_host *h = c->host;
    if (h->pg_status(res) != GTM_OK) {
        h->respond_pg_error(req, res);
        return;
    }
    if (h->pg_ntuples(res, 0) == 0 || h->pg_isnull(res, 0, 0, 0)) {
        h->respond_error(req, 404, not_found);
        return;
    }
    h->respond_raw(req, status, "application/json", h->pg_value(res, 0, 0, 0), (size_t)h->pg_length(res, 0, 0, 0));
}

static void crud_call_done(void *arg, const struct gtm_pg_result *res)
{
    struct crud_call *call = arg;
    if (call->ctx->host->req_gone(call->req)) {
        return;
    }
    crud_respond_row(call->ctx, call->req, res, call->status, call->not_found);
}

void crud_query_and_respond(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_stmt *stmt,
                            int status, const char *not_found)
{
    struct crud_call *call = c->host->req_alloc(req, sizeof *call);
    if (!call) {
        c->host->respond_error(req, 500, "Internal server error");
        return;
    }
    *call = (struct crud_call){.ctx = c, .req = req, .status = status, .not_found = not_found};
    if (c->host->pg_query(c->self, req, stmt, crud_call_done, call) != 0) {
        c->host->respond_error(req, 500, "Internal server error");
    }
}

char *crud_strdup(const struct crud_ctx *c, struct gtm_req *req, const char *text)
{
    size_t n = strlen(text) + 1;
    char *p = c->host->req_alloc(req, n);
    if (!p) {
        c->host->respond_error(req, 500, "Internal server error");
        return NULL;
    }
    memcpy(p, text, n);
    return p;
}

char *crud_json_text(const struct crud_ctx *c, struct gtm_req *req, json_t *value)
{
    char *t = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) {
        c->host->respond_error(req, 500, "Internal server error");
        return NULL;
    }
    char *p = crud_strdup(c, req, t);
    free(t);
    return p;
}

const char *crud_long(const struct crud_ctx *c, struct gtm_req *req, long v)
{
    char *p = c->host->req_alloc(req, 24);
    if (p) {
        snprintf(p, 24, "%ld", v);
    }
    return p ? p : "0";
}

int crud_paging(const struct crud_ctx *c, struct gtm_req *req, long *skip, long *limit)
{
    int a = c->host->arg_int(req, "skip", 0, 0, LONG_MAX, skip);
    int b = c->host->arg_int(req, "limit", 100, 1, 1000, limit);
    return a < 0 || b < 0 ? -1 : 0;
}

struct crud_delete {
    const struct crud_ctx *ctx;
    struct gtm_req *req;
    size_t last;
    const char *not_found;
};

static void crud_deleted(void *arg, const struct gtm_pg_result *res)
{
    struct crud_delete *d = arg;
    const struct gtm_host *h = d->ctx->host;
    if (h->req_gone(d->req)) {
        return;
    }
    if (h->pg_status(res) != GTM_OK) {
        h->respond_pg_error(d->req, res);
    } else if (h->pg_affected(res, d->last) == 0) {
        h->respond_error(d->req, 404, d->not_found);
    } else {
        h->respond_empty(d->req, 204);
    }
}

void crud_delete_and_respond(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_stmt *stmts,
                             size_t n, const char *not_found)
{
    struct crud_delete *d = c->host->req_alloc(req, sizeof *d);
    if (!d) {
        c->host->respond_error(req, 500, "Internal server error");
        return;
    }
    *d = (struct crud_delete){c, req, n - 1, not_found};
    if (c->host->pg_tx(c->self, req, stmts, n, crud_deleted, d) != 0) {
        c->host->respond_error(req, 500, "Internal server error");
    }
}

int crud_module_init(const struct gtm_host *host, struct gtm_mod *self, void **state)
{
    if (!GTM_HOST_HAS(host, now_ms)) {
        return GTM_EINVAL;   /* needs ABI 1.1: Postgres */
    }
    struct crud_ctx *c = malloc(sizeof *c);
    if (!c) {
        return GTM_ENOMEM;
    }
    c->host = host;
    c->self = self;
    *state = c;
    return 0;
}

void crud_module_fini(void *state)
{
    free(state);
}

static void crud_status_done(void *arg, const struct gtm_pg_result *res)
{
    struct crud_call *call = arg;
    const struct gtm_host *h = call->ctx->host;
    if (h->req_gone(call->req)) {
        return;
    }
    if (h->pg_status(res) != GTM_OK) {
        h->respond_pg_error(call->req, res);
        return;
    }
    if (h->pg_ntuples(res, 0) != 1) {
        h->respond_error(call->req, 500, "Internal server error");
        return;
    }
    int status = atoi(h->pg_value(res, 0, 0, 0));
    const char *text = h->pg_value(res, 0, 0, 1);
    if (status >= 200 && status < 300) {
        h->respond_raw(call->req, status, "application/json", text, (size_t)h->pg_length(res, 0, 0, 1));
    } else {
        h->respond_error(call->req, status, text);
    }
}

void crud_query_status_and_respond(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_stmt *stmt)
{
    struct crud_call *call = c->host->req_alloc(req, sizeof *call);
    if (!call) {
        c->host->respond_error(req, 500, "Internal server error");
        return;
    }
    *call = (struct crud_call){.ctx = c, .req = req};
    if (c->host->pg_query(c->self, req, stmt, crud_status_done, call) != 0) {
        c->host->respond_error(req, 500, "Internal server error");
    }
}

bool crud_path_id(const struct crud_ctx *c, struct gtm_req *req, const char *param, char id[37], const char **user)
{
    *user = crud_user(c, req);
    if (!*user) {
        return false;
    }
    c->host->arg_uuid(req, "path", param, 1, id);
    return !c->host->fail_if_invalid(req);
}

void crud_get(const struct crud_ctx *c, struct gtm_req *req, const char *param, const char *sql,
              const char *not_found)
{
    char id[37];
    const char *user;
    if (!crud_path_id(c, req, param, id, &user)) {
        return;
    }
    const char *params[] = {id, user};
    struct gtm_pg_stmt stmt = {sql, 2, params};
    crud_query_and_respond(c, req, &stmt, 200, not_found);
}

#define CRUD_MAX_FIELDS 8

void crud_update(const struct crud_ctx *c, struct gtm_req *req, const char *param, const struct crud_field *fields,
                 size_t n, const char *sql, const char *not_found)
{
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user || n > CRUD_MAX_FIELDS) {
        if (user) {
            h->respond_error(req, 500, "Internal server error");
        }
        return;
    }
    char *id = h->req_alloc(req, 37);
    const char **params = h->req_alloc(req, (2 + 2 * n) * sizeof *params);
    if (!id || !params) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    h->arg_uuid(req, "path", param, 1, id);
    json_t *body = crud_body_object(c, req);
    json_t *objs[CRUD_MAX_FIELDS] = {0};
    params[0] = id;
    params[1] = user;
    for (size_t i = 0; i < n; i++) {
        bool present = false;
        params[2 + 2 * i + 1] = NULL;
        if (body) {
            if (fields[i].kind == CRUD_STR) {
                params[2 + 2 * i + 1] = crud_field_str(c, req, body, fields[i].key, false, fields[i].nullable,
                                                       fields[i].max_chars, &present);
            } else {
                crud_field_obj(c, req, body, fields[i].key, false, fields[i].nullable, &objs[i], &present);
            }
        }
        params[2 + 2 * i] = present ? "t" : "f";
    }
    if (h->fail_if_invalid(req)) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (objs[i] && !(params[2 + 2 * i + 1] = crud_json_text(c, req, objs[i]))) {
            return;
        }
    }
    struct gtm_pg_stmt stmt = {sql, (int)(2 + 2 * n), params};
    crud_query_and_respond(c, req, &stmt, 200, not_found);
}
