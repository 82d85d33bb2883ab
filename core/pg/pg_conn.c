/* One pooled connection: a state machine on the loop.
 *
 *   WAITING --timer--> RESOLVING (uv_getaddrinfo, when a host is a name)
 *           --> CONNECTING (PQconnectStartParams, then PQconnectPoll on each
 *               poll event, first for writability) --> IDLE <--> BUSY
 *   any failure --> WAITING (0 ms after losing an established connection,
 *   backoff after a failed attempt).
 *
 * Socket discipline: one uv_poll per socket.  libpq may swap its socket inside
 * PQconnectPoll (next address, SSL or GSS retry), and the new one may reuse the
 * number, so after every PQconnectPoll the fd and its inode are compared and a
 * stale watch is closed before a new one is made.  Our own PQfinish runs only
 * in the close callback of the watch, so no fd is closed while polled.
 *
 * An IDLE session keeps watching for readability, so a server that hangs up
 * is noticed before the next op is given to it.  Running ops: pg_exec.c. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "pg/pg_internal.h"

#define PG_MAX_ADDRESSES 16

struct pg_dns {
    uv_getaddrinfo_t req;
    struct pg_pool *pool;
    struct pg_conn *conn; /* NULL once abandoned: the callback then only frees */
};

static void conn_on_timer(uv_timer_t *t);
static void conn_on_poll(uv_poll_t *h, int status, int events);
static void conn_begin_attempt(struct pg_conn *c);

static void notice_ignore(void *arg, const PGresult *res) {
    (void)arg;
    (void)res;
}

/* ---- comma-separated lists for host, hostaddr, port ---------------------- */

static bool strlist_append(struct pg_strlist *l, const char *s) {
    size_t n = strlen(s);
    size_t need = l->len + n + 2;
    if (need > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        while (cap < need)
            cap *= 2;
        char *buf = realloc(l->buf, cap);
        if (!buf)
            return false;
        l->buf = buf;
        l->cap = cap;
    }
    if (l->count > 0)
        l->buf[l->len++] = ',';
    memcpy(l->buf + l->len, s, n + 1);
    l->len += n;
    l->count++;
    return true;
}

static void strlist_reset(struct pg_strlist *l) {
    l->len = 0;
    l->count = 0;
    if (l->buf)
        l->buf[0] = '\0';
}

static void strlist_free(struct pg_strlist *l) {
    free(l->buf);
    memset(l, 0, sizeof *l);
}

/* ---- watches ------------------------------------------------------------- */

static void watch_on_closed(uv_handle_t *h) {
    struct pg_watch *w = PG_CONTAINER(h, struct pg_watch, poll);
    struct pg_pool *p = w->pool;
    if (w->finish_on_close)
        PQfinish(w->finish_on_close);
    free(w);
    pg_pool_handle_closed(p);
}

/* finish (may be NULL) is owned by the watch from here on. */
static void watch_close(struct pg_watch *w, PGconn *finish) {
    w->conn = NULL;
    w->finish_on_close = finish;
    uv_close((uv_handle_t *)&w->poll, watch_on_closed);
}

static ino_t socket_ino(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* Makes c->watch watch PQsocket(c->pg), replacing a watch whose socket libpq
 * has closed or swapped.  -1 when there is no socket or no watch could be made. */
static int conn_follow_socket(struct pg_conn *c) {
    int fd = PQsocket(c->pg);
    if (c->watch) {
        if (fd >= 0 && fd == c->watch->fd && socket_ino(fd) == c->watch->ino)
            return 0;
        watch_close(c->watch, NULL); /* libpq closed that socket itself */
        c->watch = NULL;
    }
    if (fd < 0)
        return -1;
    struct pg_watch *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    if (uv_poll_init(c->pool->loop, &w->poll, fd) != 0) {
        free(w);
        return -1;
    }
    w->pool = c->pool;
    w->conn = c;
    w->fd = fd;
    w->ino = socket_ino(fd);
    c->pool->open_handles++;
    c->watch = w;
    return 0;
}

int pg_conn_watch(struct pg_conn *c, int events) {
    struct pg_watch *w = c->watch;
    if (!w)
        return -1;
    if (w->events == events)
        return 0;
    int rc = uv_poll_start(&w->poll, events, conn_on_poll);
    if (rc == 0)
        w->events = events;
    return rc;
}

/* ---- teardown ------------------------------------------------------------ */

static void conn_abandon_lookup(struct pg_conn *c) {
    if (!c->dns)
        return;
    c->dns->conn = NULL;
    uv_cancel((uv_req_t *)&c->dns->req); /* the callback still runs, and frees it */
    c->dns = NULL;
}

/* Lets go of the session: the PGconn is finished once its watch is closed. */
static void conn_release_pg(struct pg_conn *c) {
    conn_abandon_lookup(c);
    if (c->pending) {
        PQclear(c->pending);
        c->pending = NULL;
    }
    if (c->watch) {
        watch_close(c->watch, c->pg);
        c->watch = NULL;
    } else if (c->pg) {
        PQfinish(c->pg);
    }
    c->pg = NULL;
    c->flushing = false;
    c->phase = PG_PHASE_NONE;
    pg_stmt_cache_clear(&c->cache);
    c->next_stmt_id = 1;
}

/* Drops the session and schedules the next attempt. */
void pg_conn_reopen(struct pg_conn *c) {
    conn_release_pg(c);
    c->state = PG_CONN_WAITING;
    unsigned delay = c->failures ? pg_pool_backoff_ms(c->pool, c->failures) : 0;
    uv_timer_start(&c->timer, conn_on_timer, delay, 0);
}

static void conn_connect_failed(struct pg_conn *c, const char *msg) {
    char why[PG_MESSAGE_MAX];
    pg_message_clean(why, sizeof why, msg, c->pool->target.password); /* msg may live in c->pg */
    c->failures++;
    pg_conn_reopen(c);
    pg_pool_connect_failed(c->pool, why);
}

/* ---- connecting ---------------------------------------------------------- */

static void conn_connected(struct pg_conn *c) {
    struct pg_pool *p = c->pool;
    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    if (pg_conn_watch(c, UV_READABLE) != 0) {
        conn_connect_failed(c, "cannot watch the connection's socket");
        return;
    }
    c->state = PG_CONN_IDLE;
    c->failures = 0;
    if (c->ever_up)
        p->stats.reconnects++;
    c->ever_up = true;
    pg_pool_conn_ready(p, c);
}

static void conn_continue_connect(struct pg_conn *c) {
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_FAILED) {
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    if (conn_follow_socket(c) != 0) {
        conn_connect_failed(c, "lost the connection's socket");
        return;
    }
    if (st == PGRES_POLLING_OK) {
        conn_connected(c);
        return;
    }
    if (pg_conn_watch(c, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE) != 0)
        conn_connect_failed(c, "cannot watch the connection's socket");
}

static void conn_start_libpq(struct pg_conn *c, const char *const *keywords, const char *const *values) {
    c->state = PG_CONN_CONNECTING;
    c->pg = PQconnectStartParams(keywords, values, 0);
    if (!c->pg) {
        conn_connect_failed(c, "out of memory");
        return;
    }
    PQsetNoticeReceiver(c->pg, notice_ignore, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    /* the connect() is in progress: writability says it finished */
    if (conn_follow_socket(c) != 0 || pg_conn_watch(c, UV_WRITABLE) != 0)
        conn_connect_failed(c, "cannot watch the connection's socket");
}

static bool conn_add_address(struct pg_conn *c, const char *host, const char *hostaddr, const char *port) {
    return strlist_append(&c->hosts, host) && strlist_append(&c->hostaddrs, hostaddr) &&
           strlist_append(&c->ports, port);
}

static void conn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* Looks up the remaining host names one at a time, then connects to every
 * address found, in order, through libpq's own host list. */
static void conn_resolve_next(struct pg_conn *c) {
    const struct pg_target *t = &c->pool->target;
    while (c->resolve_next < t->nhosts) {
        const char *host = t->hosts[c->resolve_next];
        if (!pg_host_is_name(host)) {
            if (!conn_add_address(c, host, pg_host_is_ip(host) ? host : "", t->ports[c->resolve_next])) {
                conn_connect_failed(c, "out of memory");
                return;
            }
            c->resolve_next++;
            continue;
        }
        struct pg_dns *d = calloc(1, sizeof *d);
        if (!d) {
            conn_connect_failed(c, "out of memory");
            return;
        }
        d->pool = c->pool;
        d->conn = c;
        d->req.data = d;
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = uv_getaddrinfo(c->pool->loop, &d->req, conn_on_resolved, host, NULL, &hints);
        if (rc != 0) {
            free(d);
            snprintf(c->resolve_error, sizeof c->resolve_error, "could not resolve host \"%s\": %s", host,
                     uv_strerror(rc));
            c->resolve_next++;
            continue;
        }
        c->dns = d;
        c->pool->open_handles++;
        return;
    }
    if (c->hostaddrs.count == 0) {
        conn_connect_failed(c, c->resolve_error[0] ? c->resolve_error : "no address to connect to");
        return;
    }
    size_t n = t->nbase;
    const char *keywords[n + 4];
    const char *values[n + 4];
    memcpy(keywords, t->keywords, n * sizeof *keywords);
    memcpy(values, t->values, n * sizeof *values);
    keywords[n] = "host";
    values[n] = c->hosts.buf;
    keywords[n + 1] = "hostaddr";
    values[n + 1] = c->hostaddrs.buf;
    keywords[n + 2] = "port";
    values[n + 2] = c->ports.buf;
    keywords[n + 3] = NULL;
    values[n + 3] = NULL;
    conn_start_libpq(c, keywords, values);
}

static void conn_take_addresses(struct pg_conn *c, int status, const struct addrinfo *res) {
    const struct pg_target *t = &c->pool->target;
    const char *host = t->hosts[c->resolve_next];
    if (status < 0) {
        snprintf(c->resolve_error, sizeof c->resolve_error, "could not resolve host \"%s\": %s", host,
                 uv_strerror(status));
        return;
    }
    char seen[PG_MAX_ADDRESSES][NI_MAXHOST];
    size_t nseen = 0;
    for (const struct addrinfo *ai = res; ai && c->hostaddrs.count < PG_MAX_ADDRESSES; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        char addr[NI_MAXHOST];
        /* numeric: no lookup, and IPv6 keeps its scope */
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof addr, NULL, 0, NI_NUMERICHOST) != 0)
            continue;
        bool dup = false;
        for (size_t i = 0; i < nseen && !dup; i++)
            dup = strcmp(seen[i], addr) == 0;
        if (dup)
            continue;
        memcpy(seen[nseen++], addr, sizeof addr);
        if (!conn_add_address(c, host, addr, t->ports[c->resolve_next]))
            return;
    }
}

static void conn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    struct pg_dns *d = req->data;
    struct pg_pool *p = d->pool;
    struct pg_conn *c = d->conn;
    free(d);
    if (c) {
        c->dns = NULL;
        conn_take_addresses(c, status, res);
        c->resolve_next++;
    }
    if (res)
        uv_freeaddrinfo(res);
    if (c)
        conn_resolve_next(c);
    pg_pool_handle_closed(p); /* last: may free the pool when it is closing */
}

static void conn_begin_attempt(struct pg_conn *c) {
    struct pg_pool *p = c->pool;
    /* libpq ignores connect_timeout under PQconnectPoll; this covers lookup too */
    uv_timer_start(&c->timer, conn_on_timer, p->cfg.connect_timeout_ms, 0);
    if (!p->target.resolve) {
        conn_start_libpq(c, p->target.keywords, p->target.values);
        return;
    }
    c->state = PG_CONN_RESOLVING;
    c->resolve_next = 0;
    c->resolve_error[0] = '\0';
    strlist_reset(&c->hosts);
    strlist_reset(&c->hostaddrs);
    strlist_reset(&c->ports);
    conn_resolve_next(c);
}

static void conn_on_timer(uv_timer_t *t) {
    struct pg_conn *c = PG_CONTAINER(t, struct pg_conn, timer);
    char why[PG_MESSAGE_MAX];
    switch (c->state) {
    case PG_CONN_WAITING:
        conn_begin_attempt(c);
        break;
    case PG_CONN_RESOLVING:
    case PG_CONN_CONNECTING:
        snprintf(why, sizeof why, "timeout expired after %u ms while %s", c->pool->cfg.connect_timeout_ms,
                 c->state == PG_CONN_RESOLVING ? "resolving the host name" : "connecting");
        conn_connect_failed(c, why);
        break;
    default:
        break;
    }
}

/* An idle session only hears notices, notifications, or its own end. */
static void conn_on_idle_input(struct pg_conn *c) {
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        pg_conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
}

static void conn_on_poll(uv_poll_t *h, int status, int events) {
    struct pg_watch *w = PG_CONTAINER(h, struct pg_watch, poll);
    struct pg_conn *c = w->conn;
    if (!c || c->watch != w)
        return;
    if (status < 0) {
        /* libuv reports POLLERR (a refused connect, a reset) as an error and
         * stops the handle; libpq reads the socket error and says what it is */
        w->events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    switch (c->state) {
    case PG_CONN_CONNECTING:
        conn_continue_connect(c);
        return;
    case PG_CONN_IDLE:
        conn_on_idle_input(c);
        break;
    case PG_CONN_BUSY:
        pg_exec_on_io(c, events);
        break;
    default:
        return;
    }
    /* re-arm a handle libuv stopped, if the session survived */
    if (c->watch == w && (c->state == PG_CONN_IDLE || c->state == PG_CONN_BUSY) &&
        pg_conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0)
        pg_conn_lost(c, "cannot watch the connection's socket");
}

struct pg_op *pg_conn_detach_op(struct pg_conn *c) {
    struct pg_op *op = c->op;
    c->op = NULL;
    c->phase = PG_PHASE_NONE;
    if (op)
        op->conn = NULL;
    return op;
}

/* The established session broke: the op in flight, if any, fails with
 * PG_EUNAVAILABLE and a new session is opened at once. */
void pg_conn_lost(struct pg_conn *c, const char *msg) {
    char why[PG_MESSAGE_MAX];
    pg_message_clean(why, sizeof why, msg && msg[0] ? msg : "connection lost", c->pool->target.password);
    bool committing = c->phase == PG_PHASE_COMMIT;
    struct pg_op *op = pg_conn_detach_op(c);
    pg_conn_reopen(c);
    if (op && committing && pg_doubt_begin(op, why))
        return;
    if (op) {
        pg_op_set_failure(op, PG_EUNAVAILABLE, -1, NULL, "connection lost: %s", why);
        pg_pool_op_finished(op);
    }
}

/* ---- used by the pool ---------------------------------------------------- */

static void conn_on_timer_closed(uv_handle_t *h) {
    struct pg_conn *c = PG_CONTAINER(h, struct pg_conn, timer);
    pg_pool_handle_closed(c->pool);
}

void pg_conn_init(struct pg_conn *c, struct pg_pool *pool) {
    memset(c, 0, sizeof *c);
    c->pool = pool;
    c->state = PG_CONN_WAITING;
    c->next_stmt_id = 1;
    uv_timer_init(pool->loop, &c->timer);
    pool->open_handles++;
}

void pg_conn_start(struct pg_conn *c) {
    conn_begin_attempt(c);
}

bool pg_conn_is_up(const struct pg_conn *c) {
    return c->state == PG_CONN_IDLE || c->state == PG_CONN_BUSY;
}

void pg_conn_abort_op(struct pg_conn *c, int status, const char *message) {
    bool committing = c->phase == PG_PHASE_COMMIT;
    struct pg_op *op = pg_conn_detach_op(c);
    if (!op)
        return;
    /* mid-command: closing the socket is the only non-blocking way out */
    pg_conn_reopen(c);
    /* a deadline passing during COMMIT leaves the outcome open: find it out */
    if (status == PG_ETIMEDOUT && committing && pg_doubt_begin(op, message))
        return;
    pg_op_set_failure(op, status, -1, NULL, "%s", message);
    pg_pool_op_finished(op);
}

void pg_conn_close(struct pg_conn *c) {
    if (c->state == PG_CONN_CLOSED)
        return;
    struct pg_op *op = pg_conn_detach_op(c);
    if (op) {
        pg_op_set_failure(op, PG_ECANCELED, -1, NULL, "the pool is closing");
        pg_pool_op_finished(op);
    }
    conn_release_pg(c);
    c->state = PG_CONN_CLOSED;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_on_timer_closed);
    strlist_free(&c->hosts);
    strlist_free(&c->hostaddrs);
    strlist_free(&c->ports);
}
