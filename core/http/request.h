/* A request as the host keeps it.  Modules see it as the opaque struct gtm_req. */
#ifndef GTM_REQUEST_H
#define GTM_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/router.h"
#include "util/arena.h"
#include "util/buf.h"

#define REQ_HEADER_LIMIT 16384      /* request line + headers, before 431 */
#define REQ_MAX_HEADERS 128
#define REQ_ID_MAX 128

struct server;
struct conn;
struct gen_waiter;

struct req_header {
    const char *name;
    const char *value;
};

struct resp_header {
    struct resp_header *next;
    const char *name;
    const char *value;
};

enum req_state { REQ_PARSING = 0, REQ_DISPATCHED, REQ_STREAMING, REQ_RESPONDED };
enum req_stage { STAGE_AUTH = 0, STAGE_ADMIT, STAGE_HANDLER, STAGE_DONE };

struct gtm_req {
    struct server *srv;
    struct conn *conn;              /* NULL once the connection went away */
    struct gtm_req *next_free;
    unsigned refs;                  /* the connection's, plus one per async operation */
    uint8_t state;
    bool abandoned;                 /* answered by the host at a module drain deadline */
    uint8_t stage;
    bool hook_pending;              /* a hook returned GTM_HOOK_ASYNC */

    /* parsing */
    size_t hlen;                    /* bytes used in hbuf */
    size_t hraw;                    /* request-line and header bytes seen */
    size_t tok_start;               /* start of the token being received */
    int parse_error;                /* 431 or 413 decided by a callback */
    const char *url;
    const char *cur_name;
    struct req_header headers[REQ_MAX_HEADERS];
    unsigned n_headers;
    struct buf body;
    unsigned method;                /* gtm_method bit, 0 for others */
    const char *method_name;
    uint8_t http_minor;
    bool keep_alive;
    bool expect_continue;
    bool chunked;

    /* after dispatch */
    char *path;                     /* decoded */
    char *query;                    /* raw, after '?', or NULL */
    const struct route_entry *route;   /* &route_copy: a hot swap may rewrite the table meanwhile */
    struct route_entry route_copy;
    struct gtm_mod *mod;            /* the route's module (holds a reference) */
    unsigned n_params;
    const char *param_names[ROUTE_MAX_PARAMS];
    const char *param_values[ROUTE_MAX_PARAMS];
    const char *user_id;
    const char *role;
    json_t *errors;                 /* recorded 422 entries */
    json_t *body_json;
    bool body_parsed;
    const char *origin;             /* Origin header, when present */
    bool origin_allowed;

    /* response */
    struct gen_waiter *gen_waiter;  /* a generation this request waits for */
    bool chunked_out;               /* a streamed answer uses chunked encoding */
    int status;
    bool close_after;
    struct resp_header *resp_headers;
    uint64_t resp_bytes;
    uint64_t start_ns;
    char id[REQ_ID_MAX + 1];

    struct arena arena;
    char arena_first[4096];
    char hbuf[REQ_HEADER_LIMIT + REQ_MAX_HEADERS * 2 + 64];
};

/* From the server's free list or malloc; refs = 1 (the connection's). */
struct gtm_req *request_new(struct server *srv, struct conn *conn);
void request_ref(struct gtm_req *r);
/* Drops one reference; the last one recycles the request. */
void request_unref(struct gtm_req *r);
/* The connection is gone: answers to r go nowhere from now on. */
void request_detach(struct gtm_req *r);

/* Parsing is complete: route it and run hooks and handler. */
void request_dispatch(struct gtm_req *r);
/* Continues after an async hook. */
void request_hook_done(struct gtm_req *r, int result);

const char *request_header(const struct gtm_req *r, const char *name);
/* First value of a query argument, percent-decoded, in the request arena. */
const char *request_query(struct gtm_req *r, const char *name);
const char *request_param(const struct gtm_req *r, const char *name);

/* Frees every request on the server's free list. */
void request_pool_drain(struct server *srv);

#endif
