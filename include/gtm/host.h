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

/* Since 1.1: one SQL statement with $1..$n text parameters (NULL = SQL NULL).
 * The host prepares each distinct text once per connection and copies the
 * parameters before pg_query/pg_tx return. */
struct gtm_pg_stmt {
    const char *sql;
    int nparams;
    const char *const *params;
};
struct gtm_pg_result;   /* valid only during the callback */
/* Called exactly once, on the loop, never from inside pg_query/pg_tx. */
typedef void (*gtm_pg_done_fn)(void *arg, const struct gtm_pg_result *res);

struct gtm_jwks;        /* a parsed JSON Web Key Set */

/* Since 1.2: one generation (website → prompt → LLM → validated output). */
enum gtm_gen_stage {
    GTM_STAGE_FETCHING = 1,    /* reading the website */
    GTM_STAGE_ANALYSING = 2,   /* preparing the prompt */
    GTM_STAGE_GENERATING = 3,  /* waiting for the model */
    GTM_STAGE_VALIDATING = 4,  /* checking the answer */
    GTM_STAGE_DONE = 5,
};
struct gtm_gen_call {
    uint32_t size;             /* sizeof(struct gtm_gen_call) */
    const char *task;          /* prompts/<task>.{system,user}.tmpl and .schema.json */
    json_t *vars;              /* template variables (borrowed; copied before generate returns) */
    const char *website_url;   /* when set, its cleaned text becomes vars.website_content */
};
struct gtm_gen_result {
    uint32_t size;             /* sizeof(struct gtm_gen_result) */
    int status;                /* GTM_OK, GTM_EUNAVAILABLE (503), GTM_ETIMEDOUT (504),
                                  GTM_EINVALID_OUTPUT or GTM_EPROVIDERS (502), GTM_ECANCELED */
    json_t *output;            /* the validated output, borrowed during the callback (may be modified) */
    const char *message;       /* one line when status != GTM_OK */
    unsigned retry_after_s;    /* with GTM_EUNAVAILABLE */
    const char *provider;
    const char *model;
    int website_read;          /* 1 when the website's text went into the prompt */
    const char *website_error; /* why it did not, or NULL */
    unsigned prompt_tokens;
    unsigned completion_tokens;
    double duration_ms;
};
typedef void (*gtm_gen_progress_fn)(void *arg, int stage);
/* Called exactly once, on the loop, even when the request has gone. */
typedef void (*gtm_gen_done_fn)(void *arg, const struct gtm_gen_result *res);

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
     * or GTM_HOOK_DONE (the hook answered).  Call it exactly once for every
     * GTM_HOOK_ASYNC, even when the client has gone; until then the request
     * stays valid. */
    void (*hook_done)(struct gtm_req *req, int result);

    /* --- outbound HTTP (libcurl on the worker's loop) --- */
    /* Starts a call on behalf of mod (which stays alive until done has run)
     * and, when req is not NULL, of req.  0, or a negative GTM_E* when the call
     * could not start (done is then not called). */
    int (*http_call)(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_http_call *call,
                     gtm_http_done_fn done, void *arg);

    /* ===== since 1.1 ===== */

    /* --- Postgres (DATABASE_URL), one pool per worker --- */
    /* One statement in autocommit, on behalf of mod (kept alive until done has
     * run) and req (may be NULL).  0, or GTM_EINVAL for bad arguments (done is
     * then not called).  A missing DATABASE_URL, a database that is down or a
     * full queue arrive in done as a failed result, never as a hang. */
    int (*pg_query)(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmt,
                    gtm_pg_done_fn done, void *arg);
    /* Several statements in one transaction on one connection; the first
     * failure rolls back the whole. */
    int (*pg_tx)(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmts, size_t n,
                 gtm_pg_done_fn done, void *arg);
    /* GTM_OK, GTM_EUNAVAILABLE, GTM_ETIMEDOUT, GTM_EBUSY, GTM_EQUERY or GTM_ECANCELED. */
    int (*pg_status)(const struct gtm_pg_result *res);
    const char *(*pg_sqlstate)(const struct gtm_pg_result *res);   /* "" unless GTM_EQUERY */
    const char *(*pg_message)(const struct gtm_pg_result *res);    /* one line, never a password */
    int (*pg_failed_stmt)(const struct gtm_pg_result *res);        /* index in a pg_tx, or -1 */
    int (*pg_ntuples)(const struct gtm_pg_result *res, size_t stmt);
    const char *(*pg_value)(const struct gtm_pg_result *res, size_t stmt, int row, int col); /* "" for NULL */
    int (*pg_isnull)(const struct gtm_pg_result *res, size_t stmt, int row, int col);
    int (*pg_length)(const struct gtm_pg_result *res, size_t stmt, int row, int col);
    long (*pg_affected)(const struct gtm_pg_result *res, size_t stmt);
    /* Answers req for a failed result: 503 with Retry-After when the database
     * cannot be reached, is saturated or too slow; 500 (logged with the request
     * id and the database's reason) when it refused a statement. */
    void (*respond_pg_error)(struct gtm_req *req, const struct gtm_pg_result *res);

    /* --- JSON Web Tokens (ES256/RS256); the key pins the algorithm --- */
    /* NULL with a one-line reason when json is not a usable key set. */
    struct gtm_jwks *(*jwks_parse)(const char *json, size_t len, char *err, size_t errlen);
    void (*jwks_free)(struct gtm_jwks *ks);
    int (*jwks_has_kid)(const struct gtm_jwks *ks, const char *kid);
    /* 0, -1 (malformed) or -2 (no kid). */
    int (*jwt_peek_kid)(const char *token, size_t len, char *kid, size_t kidlen);
    /* 0 with *claims (new reference) when the signature is good; else a
     * negative code: -1 malformed, -2 no kid, -3 unknown kid, -4 algorithm not
     * the key's, -5 bad signature; why says more. */
    int (*jwt_verify)(const struct gtm_jwks *ks, const char *token, size_t len, json_t **claims, char *why,
                      size_t whylen);

    /* --- small services --- */
    int (*random_bytes)(void *buf, size_t n);                          /* 0 or GTM_EIO */
    void (*sha256_hex)(const void *data, size_t len, char out[65]);
    int64_t (*now_ms)(void);                                           /* wall clock, Unix ms */

    /* ===== since 1.2 ===== */

    /* --- generation --- */
    /* Fetches the website (when given), renders the task's prompt, asks the
     * LLM providers, validates the answer.  Identical concurrent calls (same
     * task, URL and variables) share one run; a request whose client leaves
     * stops waiting, and a run nobody waits for any more is cancelled.
     * progress (may be NULL) reports each stage as it starts.  0, or GTM_EINVAL
     * (done is then not called). */
    int (*generate)(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_gen_call *call,
                    gtm_gen_progress_fn progress, gtm_gen_done_fn done, void *arg);

    /* --- streamed answers --- */
    /* Sends status and headers with a body of unknown length (chunked); the
     * request is answered by stream_end.  0 or -1 (already answered). */
    int (*stream_begin)(struct gtm_req *req, int status, const char *content_type);
    int (*stream_write)(struct gtm_req *req, const void *data, size_t len);
    void (*stream_end)(struct gtm_req *req);
    /* One Server-Sent Event: "event: <event>\ndata: <compact JSON>\n\n". */
    int (*sse_event)(struct gtm_req *req, const char *event, json_t *data /* borrowed */);
};

#define GTM_HOST_HAS(host, member) \
    ((host)->size >= offsetof(struct gtm_host, member) + sizeof((host)->member) && (host)->member)

#ifdef __cplusplus
}
#endif
#endif
