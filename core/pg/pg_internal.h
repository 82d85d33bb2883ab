/* Shared between the pieces of the Postgres pool: pg_pool.c (queue, deadlines,
 * delivery, close), pg_conn.c (one connection's lifecycle), pg_exec.c (running
 * an op's statements on a session), pg_target.c
 * (conninfo parsing, host lookup plan, message hygiene), pg_stmt_cache.c (the
 * per-connection prepared statement map) and pg_result.c (ops and results). */
#ifndef GTM_PG_INTERNAL_H
#define GTM_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "pg/pg.h"

#define PG_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define PG_MESSAGE_MAX 256

/* ---- results and ops (pg_result.c) --------------------------------------- */

struct pg_result {
    int status;
    int failed_stmt;
    size_t nstmts; /* res[0..nstmts) hold the statements that completed */
    PGresult **res;
    char sqlstate[6];
    char message[PG_MESSAGE_MAX];
    bool outcome_unknown;
};

enum pg_op_state {
    PG_OP_QUEUED,     /* in pool->queue */
    PG_OP_RUNNING,    /* on a connection */
    PG_OP_FINISHED,   /* in pool->finished, done not yet run */
    PG_OP_DELIVERING, /* done is running or has run; freed right after */
    PG_OP_IN_DOUBT,   /* its session died during COMMIT: in pool->doubt until resolved */
};

struct pg_op_stmt {
    const char *sql;
    int nparams;
    const char *const *params; /* point into the op's own allocation */
};

struct pg_op {
    struct pg_pool *pool;
    struct pg_conn *conn; /* while running */
    struct pg_op *prev, *next;
    enum pg_op_state state;
    bool is_tx;
    size_t nstmts;
    struct pg_op_stmt *stmts;
    uint64_t deadline; /* loop time, ms */
    unsigned timeout_ms;
    pg_done_fn done;
    void *arg;
    struct pg_result result;
    /* a write: BEGIN also inserts this random token into gtm_commit_marks,
     * so a COMMIT whose answer is lost can be looked up (pg_doubt.c) */
    bool wants_mark;
    char mark[37];
    uint64_t doubt_deadline;
    struct pg_op *resolver; /* the txid_status query in flight, if any */
};

/* Copies the statements and their parameters; NULL when out of memory. */
struct pg_op *pg_op_new(struct pg_pool *pool, const struct pg_stmt *stmts, size_t n, bool is_tx);
void pg_op_free(struct pg_op *op);
/* Records why the op failed; fmt NULL leaves the message empty. */
void pg_op_set_failure(struct pg_op *op, int status, int failed_stmt, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* A failed statement's result: sqlstate and primary message. */
void pg_op_set_query_failure(struct pg_op *op, int failed_stmt, const PGresult *res, const char *password);

/* ---- COMMITs whose answer was lost (pg_doubt.c) ------------------------- */

#define PG_COMMIT_MARKS "gtm_commit_marks"

/* INSERT, UPDATE, DELETE or MERGE, or a WITH query holding one. */
bool pg_sql_writes(const char *sql);
/* A fresh random token (UUID text) for op->mark; false if none could be drawn. */
bool pg_mark_new(char out[37]);
/* The session of op died while its COMMIT was under way (c->phase was
 * COMMIT): false when the op cannot be resolved (no mark), and the caller
 * fails it as before; true when the pool owns it until the database says
 * whether its mark is stored (committed: done gets PG_OK and the results;
 * not: PG_EUNAVAILABLE), or its deadline passes (PG_EUNAVAILABLE, saying the
 * outcome is unknown). */
bool pg_doubt_begin(struct pg_op *op, const char *why);
void pg_doubt_cancel(struct pg_op *op);
void pg_doubt_init(struct pg_pool *p);
void pg_doubt_close(struct pg_pool *p); /* fails what is in doubt, closes the timers */

/* ---- conninfo (pg_target.c) ---------------------------------------------- */

/* What pg_pool_new made of the conninfo.  keywords/values are ready for
 * PQconnectStartParams when resolve is false.  When resolve is true they omit
 * host, hostaddr and port, and leave three slots (and the NULL) free so each
 * attempt can append the names it looked up. */
struct pg_target {
    const char **keywords;
    const char **values;
    size_t nbase;
    bool resolve; /* some host is TCP: each attempt builds host/hostaddr/port */
    size_t nhosts;
    char **hosts; /* one entry per host of the conninfo */
    char **ports; /* the port of each host ("" = libpq's default) */
    char *password; /* only to scrub it from messages */
};

int pg_target_parse(struct pg_target *t, const char *conninfo, char *err, size_t errlen);
void pg_target_free(struct pg_target *t);
bool pg_host_is_ip(const char *host);
/* Not an IP, not a unix-socket directory, not empty: needs a DNS lookup. */
bool pg_host_is_name(const char *host);
/* src made one line (whitespace runs folded, trimmed), the password replaced
 * by "***", truncated on a UTF-8 boundary. */
void pg_message_clean(char *dst, size_t dstlen, const char *src, const char *password);

/* ---- prepared statements of one connection (pg_stmt_cache.c) ------------- */

#define PG_STMT_CACHE_MAX 512 /* beyond this, statements run unnamed */

struct pg_stmt_cache_slot {
    char *sql; /* NULL = empty slot */
    uint64_t hash;
    unsigned id;
};

struct pg_stmt_cache {
    struct pg_stmt_cache_slot *slots;
    size_t cap, count;
};

unsigned pg_stmt_cache_find(const struct pg_stmt_cache *c, const char *sql); /* 0 = not prepared */
bool pg_stmt_cache_full(const struct pg_stmt_cache *c);
bool pg_stmt_cache_add(struct pg_stmt_cache *c, const char *sql, unsigned id);
void pg_stmt_cache_clear(struct pg_stmt_cache *c);

/* ---- one connection (pg_conn.c) ------------------------------------------ */

enum pg_conn_state {
    PG_CONN_WAITING,    /* timer runs until the next attempt */
    PG_CONN_RESOLVING,  /* uv_getaddrinfo in flight */
    PG_CONN_CONNECTING, /* PQconnectPoll driven by the poll handle */
    PG_CONN_IDLE,
    PG_CONN_BUSY,
    PG_CONN_CLOSED,
};

enum pg_conn_phase {
    PG_PHASE_NONE,
    PG_PHASE_BEGIN,
    PG_PHASE_PREPARE,
    PG_PHASE_EXEC,
    PG_PHASE_COMMIT,
    PG_PHASE_ROLLBACK,
};

/* One uv_poll per socket: when libpq swaps the socket, the old watch is
 * closed and a new one made. */
struct pg_watch {
    uv_poll_t poll;
    struct pg_pool *pool;
    struct pg_conn *conn; /* NULL once closing */
    PGconn *finish_on_close; /* owned: PQfinish'ed once the handle is closed */
    int fd;
    ino_t ino; /* tells a new socket from an old one that got the same number */
    int events;
};

struct pg_dns;

struct pg_strlist {
    char *buf;
    size_t len, cap;
    size_t count;
};

struct pg_conn {
    struct pg_pool *pool;
    enum pg_conn_state state;
    PGconn *pg;
    struct pg_watch *watch;
    uv_timer_t timer; /* connect deadline, or the wait before the next attempt */

    /* lookup for the current attempt */
    struct pg_dns *dns;
    size_t resolve_next;
    struct pg_strlist hosts, hostaddrs, ports;
    char resolve_error[PG_MESSAGE_MAX];

    unsigned failures; /* failed attempts in a row */
    bool ever_up;
    bool flushing;

    struct pg_op *op;
    enum pg_conn_phase phase;
    size_t stmt_index;
    PGresult *pending; /* result of the command in progress */
    unsigned preparing_id;
    unsigned next_stmt_id;
    struct pg_stmt_cache cache;
};

void pg_conn_init(struct pg_conn *c, struct pg_pool *pool);
void pg_conn_start(struct pg_conn *c);
/* Sends the op's first command; failures end up in the op, never here. */
void pg_conn_run(struct pg_conn *c, struct pg_op *op);
/* The running op ends with status (deadline, cancel): its result is set, the
 * connection is dropped and reopened, since it is mid-command. */
void pg_conn_abort_op(struct pg_conn *c, int status, const char *message);
void pg_conn_close(struct pg_conn *c);
bool pg_conn_is_up(const struct pg_conn *c);

/* Between pg_conn.c and pg_exec.c. */
int pg_conn_watch(struct pg_conn *c, int events); /* poll c's socket for these events */
struct pg_op *pg_conn_detach_op(struct pg_conn *c);
/* The session broke: the running op (if any) fails with PG_EUNAVAILABLE and a
 * new session is opened. */
void pg_conn_lost(struct pg_conn *c, const char *msg);
/* Drops the session and schedules the next attempt. */
void pg_conn_reopen(struct pg_conn *c);
void pg_exec_on_io(struct pg_conn *c, int events); /* BUSY: socket events */

/* ---- the pool (pg_pool.c), as seen by connections ------------------------ */

struct pg_pool {
    uv_loop_t *loop;
    struct pg_pool_config cfg;
    struct pg_target target;
    struct pg_conn *conns;
    unsigned nconns;

    struct pg_op *queue_head, *queue_tail;
    unsigned nwaiting;
    struct pg_op *finished_head, *finished_tail;

    uv_idle_t kick; /* delivers finished ops on the next loop turn */
    uv_timer_t deadline_timer;
    uint64_t deadline_armed; /* 0 = not armed */

    struct pg_op *doubt_head; /* ops in doubt, linked by prev/next */
    uv_timer_t doubt_timer;   /* asks after the marks while doubt_head is set */
    uv_timer_t sweep_timer;   /* deletes old marks */

    unsigned open_handles; /* handles and lookups whose callbacks are pending */
    bool down;             /* an attempt failed and no connection is up */
    bool closing;
    bool kick_closing;
    char last_error[PG_MESSAGE_MAX];
    uint64_t rng;

    struct pg_pool_stats stats;
    void (*on_closed)(void *arg);
    void *on_closed_arg;
};

void pg_pool_handle_closed(struct pg_pool *p);
/* The op's result is set; done runs on the next loop turn. */
void pg_pool_op_finished(struct pg_op *op);
/* c is up and idle: give it the head of the queue. */
void pg_pool_conn_ready(struct pg_pool *p, struct pg_conn *c);
/* A connect attempt failed with why. */
void pg_pool_connect_failed(struct pg_pool *p, const char *why);
unsigned pg_pool_backoff_ms(struct pg_pool *p, unsigned failures);
/* pg_pool_query and pg_pool_tx; internal (the pool's own statements) goes
 * ahead of the queue and is never marked. */
int pg_pool_submit(struct pg_pool *p, const struct pg_stmt *stmts, size_t n, bool is_tx, unsigned timeout_ms,
                   bool internal, pg_done_fn done, void *arg, struct pg_op **out);

#endif
