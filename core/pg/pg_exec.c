/* Running an op on an established session: BEGIN, each statement (prepared
 * once per SQL text per session as s1, s2, ..., then PQsendQueryPrepared),
 * COMMIT, or ROLLBACK after a failure.  After every send, PQflush until it
 * returns 0, reading meanwhile; results are drained with PQgetResult only
 * while PQisBusy is false.  The session's lifecycle is pg_conn.c's. */
#include <stdio.h>
#include <string.h>

#include "pg/pg_internal.h"

static bool result_failed(const PGresult *r) {
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_SINGLE_TUPLE:
        return false;
    default:
        return true;
    }
}

/* The op is over (its result is set); the session goes back to the pool
 * unless it is inside a transaction. */
static void conn_finish_op(struct pg_conn *c) {
    struct pg_op *op = pg_conn_detach_op(c);
    c->flushing = false;
    pg_pool_op_finished(op);
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        pg_conn_reopen(c); /* never hand out a session mid-transaction */
        return;
    }
    c->state = PG_CONN_IDLE;
    if (pg_conn_watch(c, UV_READABLE) != 0) {
        pg_conn_lost(c, "cannot watch the connection's socket");
        return;
    }
    pg_pool_conn_ready(c->pool, c);
}

/* Sends what libpq has buffered; false when the session is gone. */
static bool conn_flush(struct pg_conn *c) {
    int r = PQflush(c->pg);
    if (r < 0) {
        pg_conn_lost(c, PQerrorMessage(c->pg));
        return false;
    }
    c->flushing = r == 1;
    if (pg_conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
        pg_conn_lost(c, "cannot watch the connection's socket");
        return false;
    }
    return true;
}

/* A PQsend* call refused: a broken session, or a command libpq rejects. */
static void conn_send_failed(struct pg_conn *c) {
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        pg_conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    struct pg_op *op = pg_conn_detach_op(c);
    pg_op_set_failure(op, PG_EQUERY, (int)c->stmt_index, NULL, "libpq refused the statement: %s",
                      PQerrorMessage(c->pg));
    pg_conn_reopen(c); /* unknown state: start over rather than guess */
    pg_pool_op_finished(op);
}

static void conn_send_simple(struct pg_conn *c, const char *sql, enum pg_conn_phase phase) {
    c->phase = phase;
    if (!PQsendQuery(c->pg, sql)) {
        conn_send_failed(c);
        return;
    }
    conn_flush(c);
}

static void stmt_name(char *buf, size_t len, unsigned id) {
    snprintf(buf, len, "s%u", id);
}

static void conn_send_prepared(struct pg_conn *c, unsigned id) {
    const struct pg_op_stmt *s = &c->op->stmts[c->stmt_index];
    char name[16];
    stmt_name(name, sizeof name, id);
    c->phase = PG_PHASE_EXEC;
    if (!PQsendQueryPrepared(c->pg, name, s->nparams, s->params, NULL, NULL, 0)) {
        conn_send_failed(c);
        return;
    }
    conn_flush(c);
}

static void conn_send_statement(struct pg_conn *c) {
    const struct pg_op_stmt *s = &c->op->stmts[c->stmt_index];
    unsigned id = pg_stmt_cache_find(&c->cache, s->sql);
    if (id) {
        conn_send_prepared(c, id);
        return;
    }
    if (pg_stmt_cache_full(&c->cache)) {
        /* too many distinct texts to keep: run this one unnamed */
        c->phase = PG_PHASE_EXEC;
        if (!PQsendQueryParams(c->pg, s->sql, s->nparams, NULL, s->params, NULL, NULL, 0)) {
            conn_send_failed(c);
            return;
        }
        conn_flush(c);
        return;
    }
    char name[16];
    c->preparing_id = c->next_stmt_id++;
    stmt_name(name, sizeof name, c->preparing_id);
    c->phase = PG_PHASE_PREPARE;
    if (!PQsendPrepare(c->pg, name, s->sql, s->nparams, NULL)) {
        conn_send_failed(c);
        return;
    }
    conn_flush(c);
}

/* The server refused a command of the op (r may be NULL; it is consumed). */
static void conn_statement_failed(struct pg_conn *c, PGresult *r, int index) {
    struct pg_op *op = c->op;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* 57P01..57P04 (shutdown, crash, not accepting, database dropped) and
     * class 08 mean the session itself is going away */
    bool going_away = state && (strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0);
    if (going_away) {
        char why[PG_MESSAGE_MAX];
        pg_message_clean(why, sizeof why, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), NULL);
        PQclear(r);
        pg_conn_lost(c, why);
        return;
    }
    if (r)
        pg_op_set_query_failure(op, index, r, c->pool->target.password);
    else
        pg_op_set_failure(op, PG_EQUERY, index, NULL, "the server sent no result");
    PQclear(r);
    if (op->is_tx && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        conn_send_simple(c, "ROLLBACK", PG_PHASE_ROLLBACK);
        return;
    }
    conn_finish_op(c);
}

/* The current command is complete (PQgetResult gave NULL): next step. */
static void conn_command_done(struct pg_conn *c) {
    PGresult *r = c->pending;
    c->pending = NULL;
    struct pg_op *op = c->op;
    bool ok = r && !result_failed(r);
    size_t i = c->stmt_index;

    switch (c->phase) {
    case PG_PHASE_BEGIN:
        if (!ok) {
            conn_statement_failed(c, r, -1);
            return;
        }
        PQclear(r);
        conn_send_statement(c);
        return;
    case PG_PHASE_PREPARE:
        if (!ok) {
            conn_statement_failed(c, r, (int)i);
            return;
        }
        PQclear(r);
        /* when the map cannot grow the statement is simply prepared again next time */
        pg_stmt_cache_add(&c->cache, op->stmts[i].sql, c->preparing_id);
        conn_send_prepared(c, c->preparing_id);
        return;
    case PG_PHASE_EXEC:
        if (!ok) {
            conn_statement_failed(c, r, (int)i);
            return;
        }
        op->result.res[i] = r; /* owned by the op now */
        op->result.nstmts = i + 1;
        c->stmt_index = i + 1;
        if (c->stmt_index < op->nstmts)
            conn_send_statement(c);
        else if (op->is_tx)
            conn_send_simple(c, "COMMIT", PG_PHASE_COMMIT);
        else
            conn_finish_op(c);
        return;
    case PG_PHASE_COMMIT:
        if (!ok) {
            conn_statement_failed(c, r, (int)op->nstmts);
            return;
        }
        if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
            pg_op_set_failure(op, PG_EQUERY, (int)op->nstmts, "40000", "the transaction was rolled back at COMMIT");
        PQclear(r);
        conn_finish_op(c);
        return;
    case PG_PHASE_ROLLBACK:
    case PG_PHASE_NONE:
        PQclear(r);
        conn_finish_op(c);
        return;
    }
}

/* Keeps one result of the current command; false when the session had to go. */
static bool conn_take_result(struct pg_conn *c, PGresult *r) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        PQclear(r);
        struct pg_op *op = pg_conn_detach_op(c);
        pg_op_set_failure(op, PG_EQUERY, (int)c->stmt_index, "0A000", "COPY is not supported through the pool");
        pg_conn_reopen(c); /* the session is stuck in COPY mode */
        pg_pool_op_finished(op);
        return false;
    }
    if (!c->pending) {
        c->pending = r;
    } else if (result_failed(c->pending)) {
        PQclear(r); /* the first error explains */
    } else {
        PQclear(c->pending);
        c->pending = r;
    }
    return true;
}

static void conn_drain(struct pg_conn *c) {
    while (c->state == PG_CONN_BUSY && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r) {
            if (!conn_take_result(c, r))
                return;
            continue;
        }
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            pg_conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        conn_command_done(c);
    }
    if (c->state == PG_CONN_BUSY && PQstatus(c->pg) == CONNECTION_BAD)
        pg_conn_lost(c, PQerrorMessage(c->pg));
}

void pg_exec_on_io(struct pg_conn *c, int events) {
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        pg_conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->flushing && !conn_flush(c))
        return;
    conn_drain(c);
}

void pg_conn_run(struct pg_conn *c, struct pg_op *op) {
    c->op = op;
    op->conn = c;
    op->state = PG_OP_RUNNING;
    c->state = PG_CONN_BUSY;
    c->stmt_index = 0;
    if (op->is_tx && op->wants_mark) {
        char begin[96 + sizeof op->mark]; /* the mark is our own UUID text: nothing to quote */
        snprintf(begin, sizeof begin, "BEGIN; INSERT INTO " PG_COMMIT_MARKS " (token) VALUES ('%s')", op->mark);
        conn_send_simple(c, begin, PG_PHASE_BEGIN);
    } else if (op->is_tx) {
        conn_send_simple(c, "BEGIN", PG_PHASE_BEGIN);
    } else {
        conn_send_statement(c);
    }
}
