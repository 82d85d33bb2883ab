/* One outbound call: its request copies, response buffers and result.
 * Internal to core/fetch; httpc.c owns the list links and the easy handle. */
#ifndef GTM_HTTPC_CALL_H
#define GTM_HTTPC_CALL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "fetch/httpc.h"

#define HTTPC_MAX_CONNECT_TIMEOUT_MS 10000L

#define HTTPC_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* A struct gtm_http_call read according to its size, with defaults applied.
 * The pointers are the caller's and valid only during httpc_start. */
struct httpc_request {
    const char *url;
    const char *method;
    const char *const *headers;
    const void *body;
    size_t body_len;
    long timeout_ms;
    size_t max_response;
};

enum httpc_call_state { CALL_RUNNING, CALL_FINISHED };

struct httpc_call {
    struct httpc *client;
    enum httpc_call_state state;
    struct httpc_call *prev, *next; /* client->running (both links) or client->pending (next) */
    CURL *easy;                     /* NULL once finished */
    gtm_http_done_fn done;
    void *arg;
    uint64_t started_ns;

    /* request copies, owned by the call until the easy handle lets go */
    struct curl_slist *req_headers;
    char *req_body;
    size_t max_response;
    bool is_head;
    bool doomed; /* a socket of this call could not be watched */

    /* httpc_start_opts */
    long timeout_ms;                 /* the whole call, all hops */
    unsigned max_redirects;          /* 0 unless the method may be redirected */
    unsigned redirects;              /* hops followed so far */
    char *user_agent;
    int (*address_allowed)(void *arg, const struct sockaddr *sa);
    void *address_arg;
    unsigned addresses_refused;
    bool last_open_refused;          /* the latest socket curl asked for was refused */
    char refused_why[128];
    char *effective_url;

    /* response */
    char *body;
    size_t body_len, body_cap;
    char *hdrs; /* "name\0value\0" pairs of the last header block */
    size_t hdrs_len, hdrs_cap;
    long block_status;
    int error;    /* set by the data callbacks to abort: GTM_ETOOBIG, GTM_EIO */
    char why[96]; /* our reason for error or doom; curl owns errbuf while attached */
    char *content_type;
    char errbuf[CURL_ERROR_SIZE];
    struct gtm_http_result result;
};

/* 0 with *req filled, or GTM_EINVAL. */
int httpc_request_read(const struct gtm_http_call *spec, struct httpc_request *req);

/* A call holding copies of req's headers and body; NULL when out of memory. */
struct httpc_call *httpc_call_new(const struct httpc_request *req);
void httpc_call_free(struct httpc_call *call);

/* Takes what call needs from opts (may be NULL); false when out of memory. */
bool httpc_call_apply_options(struct httpc_call *call, const struct httpc_request *req,
                              const struct httpc_options *opts);

/* Points easy at call (which must outlive the transfer); false when curl
 * refused an option. */
bool httpc_call_configure(struct httpc_call *call, CURL *easy, const struct httpc_request *req);

/* Frees what the easy handle pointed at, once it has let go. */
void httpc_call_drop_request(struct httpc_call *call);

/* Status, timing and content type, read while call->easy is still attached. */
void httpc_call_read_info(struct httpc_call *call);

/* Forgets what the last hop received, before the next one starts. */
void httpc_call_reset_response(struct httpc_call *call);

/* Drops the credential headers (Authorization, Proxy-Authorization, Cookie);
 * true when the header list changed and must be handed to curl again. */
bool httpc_call_drop_credentials(struct httpc_call *call);

/* Fills the result after the easy handle is gone.  forced_error, when not 0,
 * overrides what curl reported. */
void httpc_call_complete(struct httpc_call *call, CURLcode rc, int forced_error);

/* Fills the result of a call cancelled for why. */
void httpc_call_cancelled(struct httpc_call *call, const char *why);

#endif
