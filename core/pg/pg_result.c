/* Ops (what a submit copied) and the results handed to done callbacks. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/pg_internal.h"

/* One allocation: the op, its statements, result slots, parameter pointers,
 * then the SQL and parameter bytes, so nothing the caller passed is kept. */
struct pg_op *pg_op_new(struct pg_pool *pool, const struct pg_stmt *stmts, size_t n, bool is_tx) {
    size_t nptrs = 0, nbytes = 0;
    for (size_t i = 0; i < n; i++) {
        nbytes += strlen(stmts[i].sql) + 1;
        nptrs += (size_t)stmts[i].nparams;
        for (int j = 0; j < stmts[i].nparams; j++) {
            if (stmts[i].params[j])
                nbytes += strlen(stmts[i].params[j]) + 1;
        }
    }
    size_t size = sizeof(struct pg_op) + n * sizeof(struct pg_op_stmt) + n * sizeof(PGresult *) +
                  nptrs * sizeof(const char *) + nbytes;
    struct pg_op *op = calloc(1, size);
    if (!op)
        return NULL;
    op->pool = pool;
    op->is_tx = is_tx;
    op->nstmts = n;
    op->stmts = (struct pg_op_stmt *)(op + 1);
    op->result.res = (PGresult **)(op->stmts + n);
    op->result.failed_stmt = -1;
    const char **ptrs = (const char **)(op->result.res + n);
    char *bytes = (char *)(ptrs + nptrs);
    for (size_t i = 0; i < n; i++) {
        struct pg_op_stmt *s = &op->stmts[i];
        size_t len = strlen(stmts[i].sql) + 1;
        s->sql = memcpy(bytes, stmts[i].sql, len);
        bytes += len;
        s->nparams = stmts[i].nparams;
        s->params = ptrs;
        for (int j = 0; j < stmts[i].nparams; j++) {
            const char *v = stmts[i].params[j];
            if (!v) {
                *ptrs++ = NULL;
                continue;
            }
            len = strlen(v) + 1;
            *ptrs++ = memcpy(bytes, v, len);
            bytes += len;
        }
    }
    return op;
}

void pg_op_free(struct pg_op *op) {
    if (!op)
        return;
    for (size_t i = 0; i < op->nstmts; i++)
        PQclear(op->result.res[i]);
    free(op);
}

void pg_op_set_failure(struct pg_op *op, int status, int failed_stmt, const char *sqlstate, const char *fmt, ...) {
    struct pg_result *r = &op->result;
    r->status = status;
    r->failed_stmt = failed_stmt;
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate ? sqlstate : "");
    r->message[0] = '\0';
    if (fmt) {
        char raw[PG_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        pg_message_clean(r->message, sizeof r->message, raw, op->pool->target.password);
    }
}

void pg_op_set_query_failure(struct pg_op *op, int failed_stmt, const PGresult *res, const char *password) {
    struct pg_result *r = &op->result;
    r->status = PG_EQUERY;
    r->failed_stmt = failed_stmt;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", state ? state : "");
    /* the primary message only: DETAIL can quote row values */
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (!primary || !primary[0])
        primary = PQresultErrorMessage(res);
    if (!primary || !primary[0])
        primary = PQresStatus(PQresultStatus(res));
    pg_message_clean(r->message, sizeof r->message, primary, password);
}

/* ---- accessors ----------------------------------------------------------- */

static const PGresult *stmt_result(const struct pg_result *r, size_t stmt) {
    if (!r || stmt >= r->nstmts)
        return NULL;
    return r->res[stmt];
}

static bool in_range(const PGresult *res, int row, int col) {
    return res && row >= 0 && col >= 0 && row < PQntuples(res) && col < PQnfields(res);
}

int pg_result_status(const struct pg_result *r) {
    return r ? r->status : PG_EUNAVAILABLE;
}

const char *pg_result_sqlstate(const struct pg_result *r) {
    return r ? r->sqlstate : "";
}

const char *pg_result_message(const struct pg_result *r) {
    return r ? r->message : "";
}

int pg_result_failed_stmt(const struct pg_result *r) {
    return r ? r->failed_stmt : -1;
}

size_t pg_result_nstmts(const struct pg_result *r) {
    return r ? r->nstmts : 0;
}

int pg_result_ntuples(const struct pg_result *r, size_t stmt) {
    const PGresult *res = stmt_result(r, stmt);
    return res ? PQntuples(res) : 0;
}

int pg_result_nfields(const struct pg_result *r, size_t stmt) {
    const PGresult *res = stmt_result(r, stmt);
    return res ? PQnfields(res) : 0;
}

const char *pg_result_value(const struct pg_result *r, size_t stmt, int row, int col) {
    const PGresult *res = stmt_result(r, stmt);
    return in_range(res, row, col) ? PQgetvalue(res, row, col) : "";
}

int pg_result_isnull(const struct pg_result *r, size_t stmt, int row, int col) {
    const PGresult *res = stmt_result(r, stmt);
    return in_range(res, row, col) ? PQgetisnull(res, row, col) : 1;
}

int pg_result_length(const struct pg_result *r, size_t stmt, int row, int col) {
    const PGresult *res = stmt_result(r, stmt);
    return in_range(res, row, col) ? PQgetlength(res, row, col) : 0;
}

long pg_result_affected(const struct pg_result *r, size_t stmt) {
    const PGresult *res = stmt_result(r, stmt);
    const char *n = res ? PQcmdTuples((PGresult *)res) : "";
    if (!n[0])
        return -1;
    char *end;
    long v = strtol(n, &end, 10);
    return *end ? -1 : v;
}

bool pg_result_outcome_unknown(const struct pg_result *r) {
    return r->outcome_unknown;
}
