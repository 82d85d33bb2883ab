/* gtmd module ABI: what the host gives a module.
 *
 * init() receives a const struct gtm_host *.  The table starts with its own
 * size and version; later minors only append members, so a module tests for a
 * member added after the version it needs with GTM_HOST_HAS(host, member).
 *
 * JSON crosses the ABI as jansson's json_t (libjansson.so.4, whose ABI is
 * stable).  Functions that take a json_t * say whether they steal the reference.
 *
 * Lifetimes: every const char * the host returns for a request lives as long as
 * the request.  A request lives until it is answered and every async operation
 * started for it has called back.
 */
#ifndef GTM_HOST_H
#define GTM_HOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

enum gtm_log_level { GTM_LOG_DEBUG = 0, GTM_LOG_INFO = 1, GTM_LOG_WARN = 2, GTM_LOG_ERROR = 3 };

/* An outbound HTTP call.  Every field past `size` may be added to by a minor. */
struct gtm_http_call {
    uint32_t size;                /* sizeof(struct gtm_http_call) */
    const char *method;           /* "GET" when NULL */
    const char *url;              /* http:// or https:// */
    const char *const *headers;   /* NULL-terminated "Name: value" strings, or NULL */
    const void *body;             /* copied by the host before http_call returns */
    size_t body_len;
    long timeout_ms;              /* whole call; 0 = the host default (30 s) */
    size_t max_response;          /* body cap in bytes; 0 = the host default (8 MiB) */
};

struct gtm_http_result {
    uint32_t size;                /* sizeof(struct gtm_http_result) */
    int error;                    /* 0, or GTM_ETIMEDOUT, GTM_ECONNREFUSED, GTM_ETOOBIG, GTM_EIO, GTM_ECANCELED */
    const char *error_text;       /* human-readable reason when error != 0 */
    long status;                  /* HTTP status, 0 when none arrived */
    const char *body;             /* NUL-terminated for convenience; valid during the callback */
    size_t body_len;
    const char *content_type;     /* or NULL */
    double total_ms;
    /* Value of a response header (case-insensitive), or NULL. */
    const char *(*header)(const struct gtm_http_result *res, const char *name);
};

/* Called exactly once, on the loop, even when the call failed or was cancelled. */
typedef void (*gtm_http_done_fn)(void *arg, const struct gtm_http_result *res);

struct gtm_host {
    uint32_t size;                /* sizeof(struct gtm_host) as the host compiled it */
    uint16_t abi_major;
    uint16_t abi_minor;

    /* --- logging and configuration --- */
    /* One log line, tagged with the module and, when req is not NULL, its id. */
    void (*log)(struct gtm_mod *mod, struct gtm_req *req, int level, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
    /* An environment setting, or NULL when unset. */
    const char *(*config)(const char *name);

    /* --- the request --- */
    const char *(*req_method)(struct gtm_req *req);
    const char *(*req_path)(struct gtm_req *req);           /* decoded, without the query */
    const char *(*req_param)(struct gtm_req *req, const char *name);  /* {name} in the pattern */
    const char *(*req_query)(struct gtm_req *req, const char *name);  /* first value, decoded, or NULL */
    const char *(*req_header)(struct gtm_req *req, const char *name); /* case-insensitive, or NULL */
    const char *(*req_body)(struct gtm_req *req, size_t *len);
    const char *(*req_id)(struct gtm_req *req);
    const char *(*req_client_ip)(struct gtm_req *req);      /* the peer address */
    int (*req_gone)(struct gtm_req *req);                   /* 1 when the client has gone away */
    /* Memory freed with the request. */
    void *(*req_alloc)(struct gtm_req *req, size_t n);
    /* Identity set by the authenticate hook, read by handlers and admit. */
    void (*req_set_user)(struct gtm_req *req, const char *user_id, const char *role);
    const char *(*req_user)(struct gtm_req *req);
    const char *(*req_role)(struct gtm_req *req);

    /* --- validation: each records an upstream-style 422 entry on failure --- */
    /* Parses the body as JSON.  NULL after recording json_invalid (or "missing"
     * for an empty body).  The request keeps the reference. */
    json_t *(*body_json)(struct gtm_req *req);
    /* A UUID from the path (where = "path") or query (where = "query") in any
     * form upstream accepts, written as lowercase hyphenated into out[37].
     * Returns 1 when present and valid, 0 when absent and !required, -1 after
     * recording an error. */
    int (*arg_uuid)(struct gtm_req *req, const char *where, const char *name, int required, char out[37]);
    /* A bounded integer query argument with a default. 0 ok, -1 after recording.
     * With max = LONG_MAX a number too large for a long is clamped, not refused. */
    int (*arg_int)(struct gtm_req *req, const char *name, long dflt, long min, long max, long *out);
    /* Records one entry; loc is stolen, input and ctx are stolen (may be NULL). */
    void (*add_error)(struct gtm_req *req, const char *type, json_t *loc, const char *msg,
                      json_t *input, json_t *ctx);
    /* When entries were recorded: answers 422 with them and returns 1; else 0. */
    int (*fail_if_invalid)(struct gtm_req *req);

    /* --- the response: exactly one respond_* per request --- */
    void (*set_header)(struct gtm_req *req, const char *name, const char *value);
    void (*respond_json)(struct gtm_req *req, int status, json_t *body /* stolen */);
    void (*respond_raw)(struct gtm_req *req, int status, const char *content_type,
                        const void *body, size_t len);
    void (*respond_empty)(struct gtm_req *req, int status);
    /* {"detail": detail} */
    void (*respond_error)(struct gtm_req *req, int status, const char *detail);
    /* Continues a request whose hook returned GTM_HOOK_ASYNC: GTM_HOOK_CONTINUE
     * or GTM_HOOK_DONE (the hook answered). */
    void (*hook_done)(struct gtm_req *req, int result);

    /* --- outbound HTTP (libcurl on the worker's loop) --- */
    /* Starts a call on behalf of mod (which stays alive until done has run)
     * and, when req is not NULL, of req.  0, or a negative GTM_E* when the call
     * could not start (done is then not called). */
    int (*http_call)(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_http_call *call,
                     gtm_http_done_fn done, void *arg);
};

#define GTM_HOST_HAS(host, member) \
    ((host)->size >= offsetof(struct gtm_host, member) + sizeof((host)->member) && (host)->member)

#ifdef __cplusplus
}
#endif
#endif
