/* COMMITs whose answer never came.  When a session dies while COMMIT is under
 * way, the transaction may or may not be durable, and a client told "503"
 * for a write the database kept would find it later.  So each write inserts a
 * random token into gtm_commit_marks with its BEGIN (pg_exec.c), an op whose
 * COMMIT answer is lost is parked here, and a timer asks on the next session
 * that comes up, ahead of the queue, until the database says or the op's
 * deadline passes.  The question is an INSERT of the same token, marked as the
 * resolver's, ON CONFLICT DO UPDATE: it waits for the old transaction if that
 * still runs, and returns the stored row: the write's own if it committed,
 * else the resolver's (stored now, or by an earlier question whose answer was
 * lost too).
 * (txid_status is no answer: after a crash, a transaction id whose WAL never
 * reached the disk is handed out again, and may then commit.) */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pg/pg_internal.h"

/* ---- which statements write --------------------------------------------- */

static bool word_at(const char *s, const char *w) {
    size_t n = strlen(w);
    return strncasecmp(s, w, n) == 0 && !isalnum((unsigned char)s[n]) && s[n] != '_';
}

static bool write_word_at(const char *s) {
    return word_at(s, "insert") || word_at(s, "update") || word_at(s, "delete") || word_at(s, "merge");
}

static const char *skip_blanks(const char *s) {
    for (;;) {
        while (isspace((unsigned char)*s) || *s == '(')
            s++;
        if (s[0] == '-' && s[1] == '-') {
            s += strcspn(s, "\n");
        } else if (s[0] == '/' && s[1] == '*') {
            const char *end = strstr(s + 2, "*/");
            s = end ? end + 2 : s + strlen(s);
        } else {
            return s;
        }
    }
}

/* Errs towards "writes": a WITH query whose text merely mentions UPDATE
 * (FOR UPDATE, a comment) costs a transaction, never a lost outcome. */
bool pg_sql_writes(const char *sql) {
    const char *s = skip_blanks(sql);
    if (write_word_at(s))
        return true;
    if (!word_at(s, "with"))
        return false;
    for (const char *q = s; *q; q++) {
        if (*q == '\'' || *q == '"') {
            const char *close = strchr(q + 1, *q);
            if (!close)
                return false;
            q = close;
        } else if ((q == sql || (!isalnum((unsigned char)q[-1]) && q[-1] != '_')) && write_word_at(q)) {
            return true;
        }
    }
    return false;
}

bool pg_mark_new(char out[37]) {
    unsigned char b[16];
    if (uv_random(NULL, NULL, b, sizeof b, 0, NULL) != 0)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return true;
}

/* ---- ops in doubt ------------------------------------------------------- */

static void doubt_on_tick(uv_timer_t *t);

static void doubt_unlink(struct pg_pool *p, struct pg_op *op) {
    if (op->prev)
        op->prev->next = op->next;
    else
        p->doubt_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/* op's result is settled: deliver it.  A resolver still in flight is
 * orphaned (its answer no longer matters), and cancelled when asked. */
static void doubt_finish(struct pg_op *op, bool cancel_resolver) {
    struct pg_pool *p = op->pool;
    doubt_unlink(p, op);
    struct pg_op *resolver = op->resolver;
    op->resolver = NULL;
    if (resolver) {
        resolver->done = NULL;
        if (cancel_resolver)
            pg_op_cancel(resolver);
    }
    pg_pool_op_finished(op);
    if (!p->doubt_head)
        uv_timer_stop(&p->doubt_timer);
}

/* The outcome stays unknown (deadline, cancel, close): says so. */
static void doubt_fail_unknown(struct pg_op *op, int status, const char *why) {
    char lost[PG_MESSAGE_MAX];
    snprintf(lost, sizeof lost, "%s", op->result.message);
    op->pool->stats.in_doubt_unknown++;
    op->result.outcome_unknown = true;
    /* the conclusion first: the cause may be long and is cut at the end */
    pg_op_set_failure(op, status, -1, NULL, "whether the transaction was committed is unknown: %s; %s", why, lost);
}

static void doubt_answered(void *arg, const struct pg_result *r) {
    struct pg_op *op = arg;
    struct pg_pool *p = op->pool;
    op->resolver = NULL;
    if (pg_result_status(r) != PG_OK || pg_result_ntuples(r, 0) != 1)
        return; /* the next tick asks again */
    if (strcmp(pg_result_value(r, 0, 0, 0), "f") == 0) { /* the write's own mark: it committed */
        p->stats.in_doubt_committed++;
        op->result.status = PG_OK; /* the statements' results, read before COMMIT, stand */
        op->result.failed_stmt = -1;
        op->result.message[0] = '\0';
        doubt_finish(op, false);
    } else {
        char lost[PG_MESSAGE_MAX];
        snprintf(lost, sizeof lost, "%s", op->result.message);
        p->stats.in_doubt_aborted++;
        pg_op_set_failure(op, PG_EUNAVAILABLE, -1, NULL, "the transaction was rolled back: %s", lost);
        doubt_finish(op, false);
    }
}

static void doubt_ask(struct pg_op *op, uint64_t now) {
    const char *params[1] = {op->mark};
    const struct pg_stmt stmt = {
        "INSERT INTO " PG_COMMIT_MARKS " AS m (token, by_resolver) VALUES ($1::uuid, true) "
        "ON CONFLICT (token) DO UPDATE SET by_resolver = m.by_resolver RETURNING m.by_resolver", 1, params};
    uint64_t left = op->doubt_deadline - now;
    if (pg_pool_submit(op->pool, &stmt, 1, false, (unsigned)(left < 1 ? 1 : left), true, doubt_answered, op,
                       &op->resolver) != 0)
        op->resolver = NULL; /* queue full: the next tick tries again */
}

static void doubt_on_tick(uv_timer_t *t) {
    struct pg_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    struct pg_op *op = p->doubt_head;
    while (op) {
        struct pg_op *next = op->next;
        if (now >= op->doubt_deadline) {
            doubt_fail_unknown(op, PG_EUNAVAILABLE, "the database gave no answer in time");
            doubt_finish(op, true);
        } else if (!op->resolver && !p->down) {
            doubt_ask(op, now);
        }
        op = next;
    }
}

bool pg_doubt_begin(struct pg_op *op, const char *why) {
    struct pg_pool *p = op->pool;
    if (!op->wants_mark || p->closing)
        return false;
    uint64_t now = uv_now(p->loop);
    uint64_t floor = now + p->cfg.connect_timeout_ms;
    op->doubt_deadline = op->deadline > floor ? op->deadline : floor;
    pg_op_set_failure(op, PG_EUNAVAILABLE, -1, NULL, "connection lost during COMMIT: %s", why);
    op->state = PG_OP_IN_DOUBT;
    op->prev = NULL;
    op->next = p->doubt_head;
    if (p->doubt_head)
        p->doubt_head->prev = op;
    p->doubt_head = op;
    p->stats.in_doubt++;
    if (!uv_is_active((uv_handle_t *)&p->doubt_timer))
        uv_timer_start(&p->doubt_timer, doubt_on_tick, 0, p->cfg.backoff_min_ms);
    return true;
}

void pg_doubt_cancel(struct pg_op *op) {
    doubt_fail_unknown(op, PG_ECANCELED, "cancelled");
    doubt_finish(op, true);
}

/* ---- old marks ------------------------------------------------------------ */

#define PG_SWEEP_EVERY_MS 60000
/* far beyond any op's wait for its outcome */
#define PG_MARK_KEEP "10 minutes"

static void sweep_done(void *arg, const struct pg_result *r) {
    (void)arg;
    (void)r; /* a failed sweep is retried at the next one */
}

static void sweep_on_tick(uv_timer_t *t) {
    struct pg_pool *p = t->data;
    if (p->down)
        return;
    const struct pg_stmt stmt = {
        "DELETE FROM " PG_COMMIT_MARKS " WHERE created_at < now() - interval '" PG_MARK_KEEP "'", 0, NULL};
    pg_pool_submit(p, &stmt, 1, false, 0, true, sweep_done, NULL, NULL);
}

void pg_doubt_init(struct pg_pool *p) {
    uv_timer_init(p->loop, &p->doubt_timer);
    p->doubt_timer.data = p;
    uv_timer_init(p->loop, &p->sweep_timer);
    p->sweep_timer.data = p;
    if (p->cfg.commit_marks) {
        uv_timer_start(&p->sweep_timer, sweep_on_tick, PG_SWEEP_EVERY_MS, PG_SWEEP_EVERY_MS);
        uv_unref((uv_handle_t *)&p->sweep_timer); /* housekeeping keeps no loop alive */
    }
}

static void doubt_on_timer_closed(uv_handle_t *h) {
    pg_pool_handle_closed(h->data);
}

void pg_doubt_close(struct pg_pool *p) {
    while (p->doubt_head) {
        struct pg_op *op = p->doubt_head;
        doubt_fail_unknown(op, PG_ECANCELED, "the pool is closing");
        doubt_finish(op, false); /* the resolver ends with the queue or its session */
    }
    uv_timer_stop(&p->doubt_timer);
    uv_close((uv_handle_t *)&p->doubt_timer, doubt_on_timer_closed);
    uv_close((uv_handle_t *)&p->sweep_timer, doubt_on_timer_closed);
}
