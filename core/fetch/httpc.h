/* Outbound HTTP on the worker's loop: one libcurl multi handle driven by
 * uv_poll (one per socket) and one uv_timer.  Connections are reused across
 * calls.  Not thread-safe: everything happens on the loop's thread. */
#ifndef GTM_HTTPC_H
#define GTM_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "gtm/host.h"

struct httpc;            /* one per loop */
struct httpc_call;       /* one call in flight */

/* Defaults applied when a call leaves them 0. */
#define HTTPC_DEFAULT_TIMEOUT_MS 30000L
#define HTTPC_DEFAULT_MAX_RESPONSE (8u * 1024 * 1024)

/* Creates the client on loop.  NULL on failure.  curl_global_init must have run. */
struct httpc *httpc_new(uv_loop_t *loop);

/* Starts a call.  done runs exactly once on the loop (never from inside
 * httpc_start), with the result (error 0, or GTM_ETIMEDOUT, GTM_ECONNREFUSED,
 * GTM_ETOOBIG, GTM_EIO, GTM_ECANCELED).  Returns 0, or a negative GTM_E* when
 * the call could not start, in which case done is not called.  The call's
 * strings and body are copied.  *out (if not NULL) receives a handle valid
 * until done runs. */
int httpc_start(struct httpc *c, const struct gtm_http_call *call, gtm_http_done_fn done,
                void *arg, struct httpc_call **out);

/* Errors only calls started with httpc_start_opts can end with (internal to
 * the core, never handed to modules). */
#define HTTPC_EBLOCKED (-13)   /* EACCES: the address check refused where the call had to connect */
#define HTTPC_EREDIRECTS (-40) /* ELOOP: more redirects than max_redirects */

struct httpc_options {
    /* GET and HEAD follow up to this many 301/302/303/307/308 answers (http
     * and https targets only: any other scheme fails the call with
     * GTM_EINVAL); 0 hands the 3xx back.  Every hop is a transfer of its own,
     * so the address check sees each hop's connection; Authorization and
     * Cookie headers are dropped when a hop leaves the origin.  timeout_ms
     * covers all hops. */
    unsigned max_redirects;
    const char *user_agent; /* copied; NULL sends none */
    /* When set, called with every address curl is about to open a connection
     * to (each resolved address tried, on every hop); 1 lets it through, 0
     * refuses it before any packet leaves.  A call that could connect nowhere
     * else fails with HTTPC_EBLOCKED.  Such calls never reuse a pooled
     * connection, never leave theirs for reuse and never use a proxy, so no
     * connection escapes the check. */
    int (*address_allowed)(void *arg, const struct sockaddr *sa);
    void *address_arg; /* must outlive the call */
};

/* httpc_start with options (opts may be NULL: same as httpc_start). */
int httpc_start_opts(struct httpc *c, const struct gtm_http_call *call, const struct httpc_options *opts,
                     gtm_http_done_fn done, void *arg, struct httpc_call **out);

/* For results handed to done by this client: the URL of the last hop, and
 * how many redirects were followed to reach it. */
const char *httpc_result_url(const struct gtm_http_result *res);
unsigned httpc_result_redirects(const struct gtm_http_result *res);

/* Cancels a call in flight: done runs later with GTM_ECANCELED. */
void httpc_cancel(struct httpc_call *call);

/* Number of calls in flight. */
size_t httpc_active(const struct httpc *c);

/* Counters since httpc_new, for metrics and tests. */
struct httpc_stats {
    uint64_t calls_started;
    uint64_t easy_created;    /* curl_easy_init calls; flat once the spare list is warm */
    uint64_t sockets_watched; /* uv_poll handles created */
    uint64_t zero_timeouts;   /* 0 ms curl timeouts run on the next loop turn */
    uint64_t addresses_refused; /* by an address check, before connecting */
    uint64_t redirects;         /* hops followed */
};
void httpc_get_stats(const struct httpc *c, struct httpc_stats *out);

/* Cancels every call (their done callbacks run with GTM_ECANCELED on later
 * loop turns), then frees the client once its handles are closed; on_closed
 * (may be NULL) runs then. */
void httpc_close(struct httpc *c, void (*on_closed)(void *arg), void *arg);

#endif
