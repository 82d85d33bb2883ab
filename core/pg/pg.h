/* Postgres as a host service: a pool of libpq connections per worker, driven
 * by the worker's libuv loop.  Nothing here blocks: connecting (DNS included),
 * sending and reading all happen through uv_poll/uv_getaddrinfo callbacks.
 * Not thread-safe: everything happens on the loop's thread. */
#ifndef GTM_PG_H
#define GTM_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct pg_pool;
struct pg_op;            /* one query or transaction in flight or queued */
struct pg_result;        /* what an op produced; valid during the callback */

struct pg_pool_config {
    const char *conninfo;          /* libpq URI (postgres://, postgresql://) or key=value string */
    unsigned size;                 /* connections kept open; 0 = 4 */
    unsigned max_waiting;          /* ops queued beyond the busy connections; 0 = 1024 */
    unsigned query_timeout_ms;     /* default per-op deadline, queueing included; 0 = 10000 */
    unsigned connect_timeout_ms;   /* 0 = 5000 */
    unsigned backoff_min_ms;       /* reconnect backoff; 0 = 100 */
    unsigned backoff_max_ms;       /* 0 = 2000, so service returns within seconds */
    bool commit_marks;             /* writes are marked in gtm_commit_marks (sql/0007): see pg_pool_tx */
};

enum pg_status {
    PG_OK = 0,
    PG_EUNAVAILABLE = -1,  /* no connection to the database (down, refused, auth): answer 503 */
    PG_ETIMEDOUT = -2,     /* the op's deadline passed while queued or running */
    PG_EQUERY = -3,        /* the server refused a statement: sqlstate and message say why */
    PG_EBUSY = -4,         /* the wait queue is full: answer 503 */
    PG_ECANCELED = -5,     /* cancelled, or the pool is closing */
};

struct pg_stmt {
    const char *sql;               /* $1..$n placeholders; prepared once per connection by its text */
    int nparams;
    const char *const *params;     /* text format; NULL is SQL NULL; copied at submit */
};

typedef void (*pg_done_fn)(void *arg, const struct pg_result *res);

/* Creates the pool and starts connecting.  NULL with a one-line reason in err
 * when conninfo cannot be parsed (the reason never shows the password).
 * A SQLAlchemy scheme (postgresql+psycopg2://) is accepted.  Host names, from
 * conninfo or PGHOST, are looked up with uv_getaddrinfo before each attempt;
 * only hosts named through a service file are left to libpq (which blocks). */
struct pg_pool *pg_pool_new(uv_loop_t *loop, const struct pg_pool_config *cfg, char *err, size_t errlen);

/* One statement in autocommit.  timeout_ms 0 = the pool default.  done runs
 * exactly once, on the loop, never from inside this call.  0, or a negative
 * pg_status when the op could not be queued (done is then not called):
 *   PG_EBUSY      the wait queue is full (or memory ran out)
 *   PG_EQUERY     bad arguments (no SQL, nparams < 0 or > 65535, no params)
 *   PG_ECANCELED  pg_pool_close was called
 * While the database is known to be down (a connect attempt failed and no
 * connection is up) the op is accepted (0) and done gets PG_EUNAVAILABLE on
 * the next loop turn.  *out (may be NULL) is valid until done returns; done
 * may call anything here, pg_pool_close included. */
int pg_pool_query(struct pg_pool *p, const struct pg_stmt *stmt, unsigned timeout_ms, pg_done_fn done,
                  void *arg, struct pg_op **out);

/* With commit_marks, a write (INSERT, UPDATE, DELETE, MERGE, or WITH holding
 * one) given to pg_pool_query runs as a one-statement transaction, and every
 * transaction holding a write inserts a random token into gtm_commit_marks in
 * the round trip of its BEGIN.  When the session dies while COMMIT is under
 * way, the op waits (within its deadline, at least connect_timeout_ms) for
 * the database to say whether the token is stored, so done gets PG_OK for a
 * write that was committed and PG_EUNAVAILABLE for one that was not, or, if
 * the database does not answer in time, PG_EUNAVAILABLE with
 * pg_result_outcome_unknown true.  (Not txid_status: after a crash a
 * transaction id whose WAL never reached the disk is handed out again.)
 *
 * Several statements in one transaction on one connection: BEGIN, each in
 * order, COMMIT.  The first failure rolls back and stops; the result then says
 * which statement failed (n when COMMIT itself failed, -1 when BEGIN did).
 * Same contract as pg_pool_query. */
int pg_pool_tx(struct pg_pool *p, const struct pg_stmt *stmts, size_t n, unsigned timeout_ms, pg_done_fn done,
               void *arg, struct pg_op **out);

/* done runs later with PG_ECANCELED; a statement already sent costs its
 * connection (closed and reopened), never a blocking PQcancel.  An op that has
 * finished but whose done has not run yet keeps its result.  Never call this
 * after done has run: the op is gone. */
void pg_op_cancel(struct pg_op *op);

/* Results.  stmt indexes the statements of a transaction (0 for a query).
 * Out-of-range stmt, row or col read as no data: "" / isnull 1 / 0. */
int pg_result_status(const struct pg_result *r);
const char *pg_result_sqlstate(const struct pg_result *r);   /* "" unless PG_EQUERY */
const char *pg_result_message(const struct pg_result *r);    /* a one-line reason for any failure */
int pg_result_failed_stmt(const struct pg_result *r);        /* index, or -1 */
/* A write whose COMMIT was sent but never answered, and whose fate the
 * database could not be asked in time: it may be stored. */
bool pg_result_outcome_unknown(const struct pg_result *r);
size_t pg_result_nstmts(const struct pg_result *r);          /* statements that completed (the failed one excluded) */
int pg_result_ntuples(const struct pg_result *r, size_t stmt);
int pg_result_nfields(const struct pg_result *r, size_t stmt);
const char *pg_result_value(const struct pg_result *r, size_t stmt, int row, int col);  /* "" for NULL */
int pg_result_isnull(const struct pg_result *r, size_t stmt, int row, int col);
int pg_result_length(const struct pg_result *r, size_t stmt, int row, int col);
long pg_result_affected(const struct pg_result *r, size_t stmt);   /* PQcmdTuples, -1 when none */

struct pg_pool_stats {
    unsigned connections_up;
    unsigned busy;
    unsigned waiting;
    uint64_t ops_done;
    uint64_t ops_failed;
    uint64_t reconnects;   /* sessions re-established after a connection's first */
    /* writes whose session died during COMMIT, and how each was settled */
    uint64_t in_doubt;
    uint64_t in_doubt_committed;
    uint64_t in_doubt_aborted;
    uint64_t in_doubt_unknown;  /* deadline passed, or cancelled, before the database answered */
};
void pg_pool_get_stats(const struct pg_pool *p, struct pg_pool_stats *out);
/* True while at least one connection is up. */
bool pg_pool_up(const struct pg_pool *p);

/* Fails every op (PG_ECANCELED), closes the connections, frees the pool once
 * its handles are closed; on_closed (may be NULL) runs then. */
void pg_pool_close(struct pg_pool *p, void (*on_closed)(void *arg), void *arg);

#endif
