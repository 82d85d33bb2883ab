/* The host function table: what modules may do, and nothing more. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/httpc.h"
#include "http/conn.h"
#include "http/request.h"
#include "http/response.h"
#include "http/validate.h"
#include "log.h"
#include "modules/host_internal.h"
#include "modules/module_host.h"
#include "server.h"

static void h_log(struct gtm_mod *mod, struct gtm_req *req, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, req ? req->id : NULL, mod ? module_name(mod) : NULL, fmt, ap);
    va_end(ap);
}

static const char *h_config(const char *name)
{
    return getenv(name);
}

static const char *h_req_method(struct gtm_req *r) { return r->method_name; }
static const char *h_req_path(struct gtm_req *r) { return r->path; }
static const char *h_req_param(struct gtm_req *r, const char *n) { return request_param(r, n); }
static const char *h_req_query(struct gtm_req *r, const char *n) { return request_query(r, n); }
static const char *h_req_header(struct gtm_req *r, const char *n) { return request_header(r, n); }
static const char *h_req_id(struct gtm_req *r) { return r->id; }
static int h_req_gone(struct gtm_req *r) { return r->conn == NULL; }
static void *h_req_alloc(struct gtm_req *r, size_t n) { return arena_alloc(&r->arena, n); }
static const char *h_req_user(struct gtm_req *r) { return r->user_id; }
static const char *h_req_role(struct gtm_req *r) { return r->role; }

static const char *h_req_body(struct gtm_req *r, size_t *len)
{
    *len = r->body.data ? buf_pending(&r->body) : 0;
    return r->body.data ? buf_head(&r->body) : "";
}

static const char *h_req_client_ip(struct gtm_req *r)
{
    return r->conn ? r->conn->peer : "";
}

static void h_req_set_user(struct gtm_req *r, const char *user_id, const char *role)
{
    r->user_id = user_id ? arena_strdup(&r->arena, user_id) : NULL;
    r->role = role ? arena_strdup(&r->arena, role) : NULL;
}

static void h_set_header(struct gtm_req *r, const char *name, const char *value)
{
    response_add_header(r, name, value);
}

static void h_respond_json(struct gtm_req *r, int status, json_t *body)
{
    response_json(r, status, body);
}

static void h_respond_raw(struct gtm_req *r, int status, const char *ct, const void *body, size_t len)
{
    response_send(r, status, ct, body, len);
}

static void h_respond_empty(struct gtm_req *r, int status)
{
    response_send(r, status, NULL, NULL, 0);
}

static void h_respond_error(struct gtm_req *r, int status, const char *detail)
{
    response_error(r, status, detail);
}

/* Keeps the module instance and the request alive until the module's own
 * callback has run (anchors §4.2.6). */
struct http_trampoline {
    struct gtm_mod *mod;
    struct gtm_req *req;
    gtm_http_done_fn done;
    void *arg;
};

static void http_trampoline_done(void *arg, const struct gtm_http_result *res)
{
    struct http_trampoline *t = arg;
    t->done(t->arg, res);
    if (t->req) {
        request_unref(t->req);
    }
    module_unref(t->mod);
    free(t);
}

static int h_http_call(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_http_call *call,
                       gtm_http_done_fn done, void *arg)
{
    if (!mod || !call || !done || call->size < offsetof(struct gtm_http_call, max_response) + sizeof(size_t)) {
        return GTM_EINVAL;
    }
    struct http_trampoline *t = malloc(sizeof *t);
    if (!t) {
        return GTM_ENOMEM;
    }
    *t = (struct http_trampoline){.mod = mod, .req = req, .done = done, .arg = arg};
    module_ref(mod);
    if (req) {
        request_ref(req);
    }
    int rc = httpc_start(mod->srv->httpc, call, http_trampoline_done, t, NULL);
    if (rc != 0) {
        if (req) {
            request_unref(req);
        }
        module_unref(mod);
        free(t);
    }
    return rc;
}

static const struct gtm_host host_table = {
    .size = sizeof(struct gtm_host),
    .abi_major = GTM_ABI_MAJOR,
    .abi_minor = GTM_ABI_MINOR,
    .log = h_log,
    .config = h_config,
    .req_method = h_req_method,
    .req_path = h_req_path,
    .req_param = h_req_param,
    .req_query = h_req_query,
    .req_header = h_req_header,
    .req_body = h_req_body,
    .req_id = h_req_id,
    .req_client_ip = h_req_client_ip,
    .req_gone = h_req_gone,
    .req_alloc = h_req_alloc,
    .req_set_user = h_req_set_user,
    .req_user = h_req_user,
    .req_role = h_req_role,
    .body_json = req_body_json,
    .arg_uuid = req_arg_uuid,
    .arg_int = req_arg_int,
    .add_error = req_add_error,
    .fail_if_invalid = req_fail_if_invalid,
    .set_header = h_set_header,
    .respond_json = h_respond_json,
    .respond_raw = h_respond_raw,
    .respond_empty = h_respond_empty,
    .respond_error = h_respond_error,
    .hook_done = request_hook_done,
    .http_call = h_http_call,
    .pg_query = host_pg_query,
    .pg_tx = host_pg_tx,
    .pg_status = host_pg_status,
    .pg_sqlstate = host_pg_sqlstate,
    .pg_message = host_pg_message,
    .pg_failed_stmt = host_pg_failed_stmt,
    .pg_ntuples = host_pg_ntuples,
    .pg_value = host_pg_value,
    .pg_isnull = host_pg_isnull,
    .pg_length = host_pg_length,
    .pg_affected = host_pg_affected,
    .respond_pg_error = host_respond_pg_error,
    .jwks_parse = host_jwks_parse,
    .jwks_free = host_jwks_free,
    .jwks_has_kid = host_jwks_has_kid,
    .jwt_peek_kid = host_jwt_peek_kid,
    .jwt_verify = host_jwt_verify,
    .random_bytes = host_random_bytes,
    .sha256_hex = host_sha256_hex,
    .now_ms = host_now_ms,
    .generate = host_generate,
    .stream_begin = host_stream_begin,
    .stream_write = host_stream_write,
    .stream_end = host_stream_end,
    .sse_event = host_sse_event,
};

const struct gtm_host *host_api(void)
{
    return &host_table;
}
