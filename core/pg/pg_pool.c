/* The pool: connections, the FIFO of waiting ops, one deadline timer for all
 * ops, and delivery.  Finished ops go to a list that an idle handle empties on
 * the next loop turn, so a done callback never runs inside a submit call nor
 * inside libpq handling, and may itself submit, cancel or close the pool.
 *
 * "Down" means a connect attempt failed while no connection was up: new ops
 * then fail fast with PG_EUNAVAILABLE instead of waiting for a database that
 * is not there, until a connection comes up again.  Before the first failure
 * (startup, reconnecting after a dropped session) ops wait in the queue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/pg_internal.h"

#define PG_MAX_PARAMS 65535  /* the protocol counts parameters in 16 bits */
#define PG_MAX_TX_STMTS 4096

static void pool_on_kick(uv_idle_t *h);

/* ---- lifetime ------------------------------------------------------------ */

static void pool_free(struct pg_pool *p) {
    void (*cb)(void *) = p->on_closed;
    void *arg = p->on_closed_arg;
    for (unsigned i = 0; i < p->nconns; i++)
        pg_stmt_cache_clear(&p->conns[i].cache);
    pg_target_free(&p->target);
    free(p->conns);
    free(p);
    if (cb)
        cb(arg);
}

void pg_pool_handle_closed(struct pg_pool *p) {
    p->open_handles--;
    if (p->closing && p->open_handles == 0)
        pool_free(p);
}

static void pool_on_handle_closed(uv_handle_t *h) {
    pg_pool_handle_closed(h->data);
}

/* ---- queue --------------------------------------------------------------- */

static void queue_push(struct pg_pool *p, struct pg_op *op) {
    op->state = PG_OP_QUEUED;
    op->next = NULL;
    op->prev = p->queue_tail;
    if (p->queue_tail)
        p->queue_tail->next = op;
    else
        p->queue_head = op;
    p->queue_tail = op;
    p->nwaiting++;
}

static void queue_push_front(struct pg_pool *p, struct pg_op *op) {
    op->state = PG_OP_QUEUED;
    op->prev = NULL;
    op->next = p->queue_head;
    if (p->queue_head)
        p->queue_head->prev = op;
    else
        p->queue_tail = op;
    p->queue_head = op;
    p->nwaiting++;
}

static void queue_remove(struct pg_pool *p, struct pg_op *op) {
    if (op->prev)
        op->prev->next = op->next;
    else
        p->queue_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        p->queue_tail = op->prev;
    op->prev = op->next = NULL;
    p->nwaiting--;
}

void pg_pool_op_finished(struct pg_op *op) {
    struct pg_pool *p = op->pool;
    op->state = PG_OP_FINISHED;
    op->conn = NULL;
    op->next = NULL;
    op->prev = p->finished_tail;
    if (p->finished_tail)
        p->finished_tail->next = op;
    else
        p->finished_head = op;
    p->finished_tail = op;
    if (!p->kick_closing)
        uv_idle_start(&p->kick, pool_on_kick);
}

static void pool_fail_queue(struct pg_pool *p, int status, const char *message) {
    struct pg_op *op;
    while ((op = p->queue_head) != NULL) {
        queue_remove(p, op);
        pg_op_set_failure(op, status, -1, NULL, "%s", message);
        pg_pool_op_finished(op);
    }
}

static void pool_on_kick(uv_idle_t *h) {
    struct pg_pool *p = h->data;
    /* only what finished before this turn: a callback that resubmits on
     * failure must not keep us here forever */
    struct pg_op *batch = p->finished_head;
    p->finished_head = p->finished_tail = NULL;
    while (batch) {
        struct pg_op *op = batch;
        batch = op->next;
        op->next = op->prev = NULL;
        op->state = PG_OP_DELIVERING;
        p->stats.ops_done++;
        if (op->result.status != PG_OK)
            p->stats.ops_failed++;
        if (op->done)
            op->done(op->arg, &op->result);
        pg_op_free(op);
    }
    if (p->finished_head)
        return;
    if (!p->closing) {
        uv_idle_stop(&p->kick);
    } else if (!p->kick_closing) {
        p->kick_closing = true;
        uv_close((uv_handle_t *)&p->kick, pool_on_handle_closed);
    }
}

/* ---- deadlines ----------------------------------------------------------- */

static void pool_on_deadline(uv_timer_t *t);

static void pool_arm_deadline(struct pg_pool *p, uint64_t deadline) {
    if (p->closing || (p->deadline_armed && p->deadline_armed <= deadline))
        return;
    uint64_t now = uv_now(p->loop);
    p->deadline_armed = deadline;
    uv_timer_start(&p->deadline_timer, pool_on_deadline, deadline > now ? deadline - now : 0, 0);
}

static void pool_on_deadline(uv_timer_t *t) {
    struct pg_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    uint64_t next = UINT64_MAX;
    p->deadline_armed = 0;
    struct pg_op *op = p->queue_head;
    while (op) {
        struct pg_op *following = op->next;
        if (op->deadline <= now) {
            queue_remove(p, op);
            pg_op_set_failure(op, PG_ETIMEDOUT, -1, NULL, "deadline of %u ms passed while waiting for a connection",
                              op->timeout_ms);
            pg_pool_op_finished(op);
        } else if (op->deadline < next) {
            next = op->deadline;
        }
        op = following;
    }
    for (unsigned i = 0; i < p->nconns; i++) {
        struct pg_conn *c = &p->conns[i];
        if (c->state != PG_CONN_BUSY || !c->op)
            continue;
        if (c->op->deadline <= now) {
            char why[PG_MESSAGE_MAX];
            snprintf(why, sizeof why, "deadline of %u ms passed while the statement ran", c->op->timeout_ms);
            pg_conn_abort_op(c, PG_ETIMEDOUT, why);
        } else if (c->op->deadline < next) {
            next = c->op->deadline;
        }
    }
    if (next != UINT64_MAX)
        pool_arm_deadline(p, next);
}

/* ---- connections' events ------------------------------------------------- */

void pg_pool_conn_ready(struct pg_pool *p, struct pg_conn *c) {
    p->down = false;
    if (p->closing || !p->queue_head)
        return;
    struct pg_op *op = p->queue_head;
    queue_remove(p, op);
    pg_conn_run(c, op);
}

void pg_pool_connect_failed(struct pg_pool *p, const char *why) {
    snprintf(p->last_error, sizeof p->last_error, "%s", why);
    if (p->closing || pg_pool_up(p))
        return;
    p->down = true;
    char message[PG_MESSAGE_MAX];
    snprintf(message, sizeof message, "database unavailable: %s", why);
    pool_fail_queue(p, PG_EUNAVAILABLE, message);
}

static uint64_t pool_random(struct pg_pool *p) {
    uint64_t x = p->rng; /* xorshift64: jitter needs no better */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->rng = x;
    return x;
}

unsigned pg_pool_backoff_ms(struct pg_pool *p, unsigned failures) {
    uint64_t lo = p->cfg.backoff_min_ms, hi = p->cfg.backoff_max_ms;
    uint64_t base = lo;
    for (unsigned i = 1; i < failures && base < hi; i++)
        base *= 2;
    if (base > hi)
        base = hi;
    /* +-1/8 so connections that failed together do not retry together */
    uint64_t spread = base / 4;
    uint64_t delay = base - spread / 2 + (spread ? pool_random(p) % (spread + 1) : 0);
    if (delay < lo)
        delay = lo;
    if (delay > hi)
        delay = hi;
    return (unsigned)delay;
}

/* ---- public -------------------------------------------------------------- */

struct pg_pool *pg_pool_new(uv_loop_t *loop, const struct pg_pool_config *cfg, char *err, size_t errlen) {
    char scratch[PG_MESSAGE_MAX];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (!loop || !cfg) {
        snprintf(err, errlen, "%s", "no loop or no configuration");
        return NULL;
    }
    struct pg_pool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "%s", "out of memory");
        return NULL;
    }
    p->loop = loop;
    p->cfg = *cfg;
    p->cfg.conninfo = NULL; /* parsed below; the caller's string is not kept */
    if (!p->cfg.size)
        p->cfg.size = 4;
    if (!p->cfg.max_waiting)
        p->cfg.max_waiting = 1024;
    if (!p->cfg.query_timeout_ms)
        p->cfg.query_timeout_ms = 10000;
    if (!p->cfg.connect_timeout_ms)
        p->cfg.connect_timeout_ms = 5000;
    if (!p->cfg.backoff_min_ms)
        p->cfg.backoff_min_ms = 100;
    if (!p->cfg.backoff_max_ms)
        p->cfg.backoff_max_ms = 2000;
    if (p->cfg.backoff_max_ms < p->cfg.backoff_min_ms)
        p->cfg.backoff_max_ms = p->cfg.backoff_min_ms;
    if (pg_target_parse(&p->target, cfg->conninfo, err, errlen) != 0) {
        free(p);
        return NULL;
    }
    p->conns = calloc(p->cfg.size, sizeof *p->conns);
    if (!p->conns) {
        pg_target_free(&p->target);
        free(p);
        snprintf(err, errlen, "%s", "out of memory");
        return NULL;
    }
    p->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)p;
    if (!p->rng)
        p->rng = 0x9e3779b97f4a7c15ULL;
    uv_idle_init(loop, &p->kick);
    p->kick.data = p;
    uv_timer_init(loop, &p->deadline_timer);
    p->deadline_timer.data = p;
    pg_doubt_init(p);
    p->open_handles = 4;
    p->nconns = p->cfg.size;
    for (unsigned i = 0; i < p->nconns; i++)
        pg_conn_init(&p->conns[i], p);
    for (unsigned i = 0; i < p->nconns; i++)
        pg_conn_start(&p->conns[i]);
    return p;
}

int pg_pool_submit(struct pg_pool *p, const struct pg_stmt *stmts, size_t n, bool is_tx, unsigned timeout_ms,
                   bool internal, pg_done_fn done, void *arg, struct pg_op **out) {
    if (out)
        *out = NULL;
    if (!p)
        return PG_EUNAVAILABLE;
    if (p->closing)
        return PG_ECANCELED;
    if (!stmts || n == 0 || n > PG_MAX_TX_STMTS)
        return PG_EQUERY;
    for (size_t i = 0; i < n; i++) {
        const struct pg_stmt *s = &stmts[i];
        if (!s->sql || s->nparams < 0 || s->nparams > PG_MAX_PARAMS || (s->nparams > 0 && !s->params))
            return PG_EQUERY;
    }
    bool writes = false;
    for (size_t i = 0; i < n && p->cfg.commit_marks && !internal && !writes; i++)
        writes = pg_sql_writes(stmts[i].sql);
    /* a lone write runs in a transaction of its own, so its COMMIT can be
     * looked up if the session dies under it */
    struct pg_op *op = pg_op_new(p, stmts, n, is_tx || writes);
    if (!op)
        return PG_EBUSY;
    if (writes && !pg_mark_new(op->mark)) {
        pg_op_free(op);
        return PG_EBUSY;
    }
    op->wants_mark = writes;
    op->done = done;
    op->arg = arg;
    op->timeout_ms = timeout_ms ? timeout_ms : p->cfg.query_timeout_ms;
    op->deadline = uv_now(p->loop) + op->timeout_ms;

    if (p->down) {
        pg_op_set_failure(op, PG_EUNAVAILABLE, -1, NULL, "database unavailable: %s", p->last_error);
        pg_pool_op_finished(op);
    } else {
        struct pg_conn *idle = NULL;
        for (unsigned i = 0; i < p->nconns && !idle; i++) {
            if (p->conns[i].state == PG_CONN_IDLE)
                idle = &p->conns[i];
        }
        if (!idle && p->nwaiting >= p->cfg.max_waiting) {
            pg_op_free(op);
            return PG_EBUSY;
        }
        pool_arm_deadline(p, op->deadline);
        if (idle)
            pg_conn_run(idle, op); /* a failure here still ends in done, later */
        else if (internal)
            queue_push_front(p, op);
        else
            queue_push(p, op);
    }
    if (out)
        *out = op;
    return 0;
}

int pg_pool_query(struct pg_pool *p, const struct pg_stmt *stmt, unsigned timeout_ms, pg_done_fn done, void *arg,
                  struct pg_op **out) {
    return pg_pool_submit(p, stmt, 1, false, timeout_ms, false, done, arg, out);
}

int pg_pool_tx(struct pg_pool *p, const struct pg_stmt *stmts, size_t n, unsigned timeout_ms, pg_done_fn done,
               void *arg, struct pg_op **out) {
    return pg_pool_submit(p, stmts, n, true, timeout_ms, false, done, arg, out);
}

void pg_op_cancel(struct pg_op *op) {
    if (!op)
        return;
    switch (op->state) {
    case PG_OP_QUEUED:
        queue_remove(op->pool, op);
        pg_op_set_failure(op, PG_ECANCELED, -1, NULL, "cancelled");
        pg_pool_op_finished(op);
        break;
    case PG_OP_RUNNING:
        pg_conn_abort_op(op->conn, PG_ECANCELED, "cancelled");
        break;
    case PG_OP_IN_DOUBT:
        pg_doubt_cancel(op);
        break;
    default:
        break; /* already finished: it keeps its result */
    }
}

void pg_pool_get_stats(const struct pg_pool *p, struct pg_pool_stats *out) {
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    *out = p->stats;
    out->connections_up = out->busy = 0;
    for (unsigned i = 0; i < p->nconns; i++) {
        out->connections_up += pg_conn_is_up(&p->conns[i]);
        out->busy += p->conns[i].state == PG_CONN_BUSY;
    }
    out->waiting = p->nwaiting;
}

bool pg_pool_up(const struct pg_pool *p) {
    if (!p)
        return false;
    for (unsigned i = 0; i < p->nconns; i++) {
        if (pg_conn_is_up(&p->conns[i]))
            return true;
    }
    return false;
}

void pg_pool_close(struct pg_pool *p, void (*on_closed)(void *arg), void *arg) {
    if (!p || p->closing)
        return;
    p->closing = true;
    p->on_closed = on_closed;
    p->on_closed_arg = arg;
    pg_doubt_close(p); /* before the queue: its resolvers are queued there */
    pool_fail_queue(p, PG_ECANCELED, "the pool is closing");
    for (unsigned i = 0; i < p->nconns; i++)
        pg_conn_close(&p->conns[i]);
    uv_timer_stop(&p->deadline_timer);
    uv_close((uv_handle_t *)&p->deadline_timer, pool_on_handle_closed);
    /* the kick delivers what is left, then closes itself */
    uv_idle_start(&p->kick, pool_on_kick);
}
