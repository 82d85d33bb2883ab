/* Outbound HTTP: libcurl's multi interface driven by the libuv loop.
 *
 * Flow: httpc_start adds an easy handle; curl tells us which sockets to watch
 * (on_curl_socket -> one uv_poll per socket) and when to wake it
 * (on_curl_timer -> one uv_timer, or the kick idle for "now").  Every
 * curl_multi_socket_action is followed by draining curl_multi_info_read;
 * finished calls go to a FIFO and their done callbacks run once curl has
 * returned, so user code never runs inside libcurl. */
#include "fetch/httpc.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch/httpc_call.h"
#include "gtm/module.h"

#define HTTPC_MAX_CONNECTS 1024L   /* idle connections kept for reuse: one per call at a busy peak */
#define HTTPC_SPARE_EASY 16 /* reset easy handles kept for the next calls */

struct httpc_sock_ctx {
    uv_poll_t poll;
    struct httpc *client;
    curl_socket_t fd;
    struct httpc_sock_ctx *prev, *next; /* client->socks: watched, not yet closing */
};

struct httpc {
    uv_loop_t *loop;
    CURLM *multi; /* NULL once httpc_close has cleaned it up */
    uv_timer_t timer;
    uv_idle_t kick; /* runs curl's 0 ms timeouts and pending done callbacks on the next turn */
    bool timeout_due;
    bool closing, finalizing;
    size_t n_doomed;
    size_t n_calls; /* started and done not yet run */
    struct httpc_call *running;
    struct httpc_call *pending_head, *pending_tail;
    struct httpc_sock_ctx *socks;
    CURL *spare[HTTPC_SPARE_EASY];
    size_t n_spare;
    size_t open_handles; /* uv handles whose close callback has not run */
    void (*on_closed)(void *arg);
    void *on_closed_arg;
    struct httpc_stats stats;
};

static void on_kick(uv_idle_t *h);

/* ---- handle lifetime ---------------------------------------------------- */

static void destroy_if_unused(struct httpc *c) {
    if (c->open_handles != 0)
        return;
    void (*cb)(void *) = c->on_closed;
    void *arg = c->on_closed_arg;
    free(c);
    if (cb)
        cb(arg);
}

static void on_handle_closed(uv_handle_t *h) {
    struct httpc *c = h->data;
    c->open_handles--;
    destroy_if_unused(c);
}

static void on_sock_closed(uv_handle_t *h) {
    struct httpc_sock_ctx *ctx = HTTPC_CONTAINER(h, struct httpc_sock_ctx, poll);
    struct httpc *c = ctx->client;
    free(ctx);
    c->open_handles--;
    destroy_if_unused(c);
}

static void sock_ctx_close(struct httpc_sock_ctx *ctx) {
    struct httpc *c = ctx->client;
    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        c->socks = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    ctx->prev = ctx->next = NULL;
    uv_poll_stop(&ctx->poll);
    uv_close((uv_handle_t *)&ctx->poll, on_sock_closed);
}

static void kick(struct httpc *c) {
    if (!c->finalizing && !uv_is_active((uv_handle_t *)&c->kick))
        uv_idle_start(&c->kick, on_kick);
}

/* ---- finishing calls ----------------------------------------------------- */

/* Gives the easy handle back (to the spare list or to curl) and frees the
 * request copies it pointed at. */
static void detach_easy(struct httpc_call *call) {
    struct httpc *c = call->client;
    CURL *easy = call->easy;

    if (call->prev)
        call->prev->next = call->next;
    else
        c->running = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;

    curl_multi_remove_handle(c->multi, easy);
    call->easy = NULL;
    c->stats.addresses_refused += call->addresses_refused;
    if (!c->closing && c->n_spare < HTTPC_SPARE_EASY) {
        curl_easy_reset(easy);
        c->spare[c->n_spare++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
    httpc_call_drop_request(call);
}

static void enqueue_pending(struct httpc_call *call) {
    struct httpc *c = call->client;
    call->state = CALL_FINISHED;
    call->next = NULL;
    if (c->pending_tail)
        c->pending_tail->next = call;
    else
        c->pending_head = call;
    c->pending_tail = call;
}

static void finish_call(struct httpc_call *call, CURLcode rc, int forced_error) {
    httpc_call_read_info(call);
    detach_easy(call);
    httpc_call_complete(call, rc, forced_error);
    enqueue_pending(call);
}

static void cancel_call(struct httpc_call *call, const char *why) {
    detach_easy(call);
    httpc_call_cancelled(call, why);
    enqueue_pending(call);
    kick(call->client);
}

/* Runs done for every finished call.  Only called from loop callbacks after
 * curl has returned, so done may start, cancel or close freely. */
static void deliver_pending(struct httpc *c) {
    struct httpc_call *call;
    while ((call = c->pending_head)) {
        c->pending_head = call->next;
        if (!c->pending_head)
            c->pending_tail = NULL;
        c->n_calls--;
        call->done(call->arg, &call->result);
        httpc_call_free(call);
    }
}

/* ---- redirects ------------------------------------------------------------ */

static bool is_redirect_status(long status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Scheme, host and port of url (port defaulted); false when it does not parse. */
static bool url_origin(const char *url, char **scheme, char **host, char **port) {
    *scheme = *host = *port = NULL;
    CURLU *u = curl_url();
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    curl_url_cleanup(u);
    return ok;
}

static bool same_origin(const char *a, const char *b) {
    char *sa, *ha, *pa, *sb, *hb, *pb;
    bool ok_a = url_origin(a, &sa, &ha, &pa), ok_b = url_origin(b, &sb, &hb, &pb);
    bool same = ok_a && ok_b && strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
    curl_free(sa);
    curl_free(ha);
    curl_free(pa);
    curl_free(sb);
    curl_free(hb);
    curl_free(pb);
    return same;
}

/* A finished hop that asks to be redirected: starts the next hop on the same
 * easy handle (a new transfer, so the address check sees its connection).
 * 1 when restarted, 0 when the answer is the result, or a negative error to
 * finish the call with (call->why says why). */
static int follow_redirect(struct httpc *c, struct httpc_call *call) {
    long status = 0;
    char *location = NULL, *current = NULL;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (!is_redirect_status(status) ||
        curl_easy_getinfo(call->easy, CURLINFO_REDIRECT_URL, &location) != CURLE_OK || !location)
        return 0;
    if (call->redirects >= call->max_redirects) {
        snprintf(call->why, sizeof(call->why), "more than %u redirects", call->max_redirects);
        return HTTPC_EREDIRECTS;
    }
    if (strncasecmp(location, "http://", 7) != 0 && strncasecmp(location, "https://", 8) != 0) {
        snprintf(call->why, sizeof(call->why), "redirected to a URL that is not http or https");
        return GTM_EINVAL;
    }
    long elapsed_ms = (long)((uv_hrtime() - call->started_ns) / 1000000);
    long remaining_ms = call->timeout_ms - elapsed_ms;
    if (remaining_ms <= 0) {
        snprintf(call->why, sizeof(call->why), "timed out after %u redirects", call->redirects);
        return GTM_ETIMEDOUT;
    }
    /* Both strings belong to the easy handle and die with the next setopt. */
    char *next = strdup(location);
    curl_easy_getinfo(call->easy, CURLINFO_EFFECTIVE_URL, &current);
    bool leaves_origin = !current || !same_origin(current, next ? next : "");
    if (!next) {
        snprintf(call->why, sizeof(call->why), "out of memory");
        return GTM_EIO;
    }

    CURL *easy = call->easy;
    curl_multi_remove_handle(c->multi, easy);
    httpc_call_reset_response(call);
    CURLcode rc = curl_easy_setopt(easy, CURLOPT_URL, next);
    free(next);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, remaining_ms);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                              remaining_ms < HTTPC_MAX_CONNECT_TIMEOUT_MS ? remaining_ms
                                                                          : HTTPC_MAX_CONNECT_TIMEOUT_MS);
    if (rc == CURLE_OK && leaves_origin && httpc_call_drop_credentials(call))
        rc = curl_easy_setopt(easy, CURLOPT_HTTPHEADER, call->req_headers);
    if (rc != CURLE_OK || curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        snprintf(call->why, sizeof(call->why), "cannot start the redirected request");
        return GTM_EIO;
    }
    call->redirects++;
    c->stats.redirects++;
    return 1;
}

/* ---- driving curl ------------------------------------------------------- */

static void drain_finished(struct httpc *c) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result; /* msg dies with the easy handle's removal */
        struct httpc_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &call);
        if (!call || call->state != CALL_RUNNING)
            continue;
        int followed = rc == CURLE_OK && call->max_redirects ? follow_redirect(c, call) : 0;
        if (followed == 0)
            finish_call(call, rc, 0);
        else if (followed < 0)
            finish_call(call, CURLE_OK, followed);
    }
}

static void drive(struct httpc *c, curl_socket_t fd, int flags) {
    if (!c->multi)
        return;
    int running = 0;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    drain_finished(c);
}

static void fail_doomed(struct httpc *c) {
    c->n_doomed = 0;
    struct httpc_call *call = c->running, *next;
    for (; call; call = next) {
        next = call->next;
        if (call->doomed)
            finish_call(call, CURLE_OK, GTM_EIO);
    }
}

static void finalize(struct httpc *c) {
    c->finalizing = true;
    uv_idle_stop(&c->kick);
    uv_close((uv_handle_t *)&c->kick, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_kick(uv_idle_t *h) {
    struct httpc *c = h->data;
    if (c->n_doomed && c->multi)
        fail_doomed(c);
    if (c->timeout_due) {
        c->timeout_due = false;
        drive(c, CURL_SOCKET_TIMEOUT, 0);
    }
    deliver_pending(c);
    if (c->closing) {
        if (!c->finalizing && !c->pending_head)
            finalize(c);
        return;
    }
    if (!c->timeout_due && !c->pending_head && !c->n_doomed)
        uv_idle_stop(h);
}

static void on_timer_fired(uv_timer_t *h) {
    struct httpc *c = h->data;
    drive(c, CURL_SOCKET_TIMEOUT, 0);
    deliver_pending(c);
}

static void on_sock_ready(uv_poll_t *h, int status, int events) {
    struct httpc_sock_ctx *ctx = HTTPC_CONTAINER(h, struct httpc_sock_ctx, poll);
    struct httpc *c = ctx->client;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    drive(c, ctx->fd, flags);
    deliver_pending(c);
}

/* curl must not be called from here, so a call whose socket we cannot watch is
 * failed from the kick handle instead of hanging until its timeout. */
static void doom_call(struct httpc *c, CURL *easy, const char *why, int uv_err) {
    struct httpc_call *call = NULL;
    if (!easy || curl_easy_getinfo(easy, CURLINFO_PRIVATE, &call) != CURLE_OK || !call ||
        call->state != CALL_RUNNING || call->doomed)
        return;
    snprintf(call->why, sizeof(call->why), "%s: %s", why, uv_strerror(uv_err));
    call->doomed = true;
    c->n_doomed++;
    kick(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    struct httpc *c = userp;
    struct httpc_sock_ctx *ctx = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (ctx) {
            sock_ctx_close(ctx);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (c->closing)
        return 0;
    if (!ctx) {
        ctx = calloc(1, sizeof(*ctx));
        if (!ctx) {
            doom_call(c, easy, "cannot watch socket", UV_ENOMEM);
            return 0;
        }
        int err = uv_poll_init_socket(c->loop, &ctx->poll, fd);
        if (err) {
            free(ctx);
            doom_call(c, easy, "cannot watch socket", err);
            return 0;
        }
        ctx->client = c;
        ctx->fd = fd;
        ctx->next = c->socks;
        if (c->socks)
            c->socks->prev = ctx;
        c->socks = ctx;
        c->open_handles++;
        c->stats.sockets_watched++;
        curl_multi_assign(c->multi, fd, ctx);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    int err = uv_poll_start(&ctx->poll, events, on_sock_ready);
    if (err)
        doom_call(c, easy, "cannot poll socket", err);
    return 0;
}

/* A 0 ms uv_timer started from a timer callback re-runs in the same pass on
 * libuv < 1.48 (libuv#4245) and can spin, so "now" goes through the idle
 * handle, which runs on the next loop turn without adding latency. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    struct httpc *c = userp;
    if (c->closing)
        return 0;
    if (timeout_ms < 0) {
        uv_timer_stop(&c->timer);
        c->timeout_due = false;
    } else if (timeout_ms == 0) {
        uv_timer_stop(&c->timer);
        c->timeout_due = true;
        c->stats.zero_timeouts++;
        kick(c);
    } else {
        c->timeout_due = false;
        uv_timer_start(&c->timer, on_timer_fired, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ---- public API --------------------------------------------------------- */

struct httpc *httpc_new(uv_loop_t *loop) {
    if (!loop)
        return NULL;
    struct httpc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, HTTPC_MAX_CONNECTS);
    /* Neither init can fail on a live loop (libuv only fills the struct). */
    uv_timer_init(loop, &c->timer);
    uv_idle_init(loop, &c->kick);
    c->timer.data = c;
    c->kick.data = c;
    c->open_handles = 2;
    return c;
}

static CURL *take_easy(struct httpc *c) {
    if (c->n_spare)
        return c->spare[--c->n_spare];
    c->stats.easy_created++;
    return curl_easy_init();
}

int httpc_start(struct httpc *c, const struct gtm_http_call *spec, gtm_http_done_fn done,
                void *arg, struct httpc_call **out) {
    return httpc_start_opts(c, spec, NULL, done, arg, out);
}

int httpc_start_opts(struct httpc *c, const struct gtm_http_call *spec, const struct httpc_options *opts,
                     gtm_http_done_fn done, void *arg, struct httpc_call **out) {
    if (out)
        *out = NULL;
    struct httpc_request req;
    if (!c || !done)
        return GTM_EINVAL;
    int err = httpc_request_read(spec, &req);
    if (err)
        return err;
    if (c->closing)
        return GTM_ECANCELED;

    struct httpc_call *call = httpc_call_new(&req);
    if (!call)
        return GTM_ENOMEM;
    call->client = c;
    call->done = done;
    call->arg = arg;
    if (!httpc_call_apply_options(call, &req, opts)) {
        httpc_call_free(call);
        return GTM_ENOMEM;
    }
    CURL *easy = take_easy(c);
    if (!easy) {
        httpc_call_free(call);
        return GTM_ENOMEM;
    }
    if (!httpc_call_configure(call, easy, &req)) {
        err = GTM_EINVAL;
    } else if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        err = GTM_EIO;
    }
    if (err) {
        curl_easy_cleanup(easy);
        httpc_call_free(call);
        return err;
    }
    call->easy = easy;
    call->state = CALL_RUNNING;
    call->next = c->running;
    if (c->running)
        c->running->prev = call;
    c->running = call;
    c->n_calls++;
    c->stats.calls_started++;
    if (out)
        *out = call;
    return 0;
}

void httpc_cancel(struct httpc_call *call) {
    if (call && call->state == CALL_RUNNING)
        cancel_call(call, "cancelled");
}

size_t httpc_active(const struct httpc *c) { return c ? c->n_calls : 0; }

const char *httpc_result_url(const struct gtm_http_result *res) {
    if (!res)
        return NULL;
    const struct httpc_call *call = HTTPC_CONTAINER(res, struct httpc_call, result);
    return call->effective_url;
}

unsigned httpc_result_redirects(const struct gtm_http_result *res) {
    if (!res)
        return 0;
    const struct httpc_call *call = HTTPC_CONTAINER(res, struct httpc_call, result);
    return call->redirects;
}

void httpc_get_stats(const struct httpc *c, struct httpc_stats *out) {
    if (c && out)
        *out = c->stats;
}

void httpc_close(struct httpc *c, void (*on_closed)(void *arg), void *arg) {
    if (!c || c->closing)
        return;
    c->closing = true;
    c->on_closed = on_closed;
    c->on_closed_arg = arg;

    while (c->running)
        cancel_call(c->running, "client closed");
    while (c->n_spare)
        curl_easy_cleanup(c->spare[--c->n_spare]);
    /* Closes cached connections; curl reports their sockets via CURL_POLL_REMOVE. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_ctx_close(c->socks);
    uv_timer_stop(&c->timer);
    c->timeout_due = false;
    c->n_doomed = 0;
    kick(c); /* delivers the cancellations, then closes the handles */
}
