/* The host table's Postgres functions: trampolines that keep the module
 * instance and the request alive until the module's callback has run, and a
 * result wrapper so modules never see the pool's types. */
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "http/response.h"
#include "log.h"
#include "modules/host_internal.h"
#include "modules/module_host.h"
#include "pg/pg.h"
#include "server.h"
#include "util/defer.h"

struct gtm_pg_result {
    int status;
    const char *message;
    const struct pg_result *inner;   /* NULL when the op never reached the pool */
};

struct pg_trampoline {
    struct gtm_mod *mod;
    struct gtm_req *req;
    gtm_pg_done_fn done;
    void *arg;
    int status;                      /* for a failure decided before the pool */
    const char *message;
};

static int map_status(int pg)
{
    switch (pg) {
    case PG_OK: return GTM_OK;
    case PG_EUNAVAILABLE: return GTM_EUNAVAILABLE;
    case PG_ETIMEDOUT: return GTM_ETIMEDOUT;
    case PG_EQUERY: return GTM_EQUERY;
    case PG_EBUSY: return GTM_EBUSY;
    default: return GTM_ECANCELED;
    }
}

static void trampoline_release(struct pg_trampoline *t)
{
    if (t->req) {
        request_unref(t->req);
    }
    module_unref(t->mod);
    free(t);
}

static void trampoline_done(void *arg, const struct pg_result *res)
{
    struct pg_trampoline *t = arg;
    struct gtm_pg_result r = {map_status(pg_result_status(res)), pg_result_message(res), res};
    t->done(t->arg, &r);
    trampoline_release(t);
}

static void trampoline_failed(void *arg)
{
    struct pg_trampoline *t = arg;
    struct gtm_pg_result r = {t->status, t->message, NULL};
    t->done(t->arg, &r);
    trampoline_release(t);
}

static int submit(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmts, size_t n,
                  int as_tx, gtm_pg_done_fn done, void *arg)
{
    if (!mod || !stmts || n == 0 || !done) {
        return GTM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!stmts[i].sql || stmts[i].nparams < 0 || (stmts[i].nparams > 0 && !stmts[i].params)) {
            return GTM_EINVAL;
        }
    }
    struct pg_trampoline *t = calloc(1, sizeof *t);
    if (!t) {
        return GTM_ENOMEM;
    }
    *t = (struct pg_trampoline){.mod = mod, .req = req, .done = done, .arg = arg};
    module_ref(mod);
    if (req) {
        request_ref(req);
    }
    struct server *srv = mod->srv;
    int rc;
    if (!srv->pg) {
        rc = PG_EUNAVAILABLE;
        t->message = "the database is not configured: set DATABASE_URL";
    } else {
        /* struct gtm_pg_stmt and struct pg_stmt have one layout by design */
        const struct pg_stmt *ps = (const struct pg_stmt *)stmts;
        rc = as_tx ? pg_pool_tx(srv->pg, ps, n, 0, trampoline_done, t, NULL)
                   : pg_pool_query(srv->pg, ps, 0, trampoline_done, t, NULL);
        if (rc < 0) {
            t->message = rc == PG_EBUSY ? "the database queue is full" : "the database is unavailable";
        }
    }
    if (rc < 0) {
        t->status = map_status(rc);
        if (defer_call(srv->loop, trampoline_failed, t) < 0) {
            trampoline_release(t);
            return GTM_ENOMEM;
        }
    }
    return 0;
}

_Static_assert(sizeof(struct gtm_pg_stmt) == sizeof(struct pg_stmt), "gtm_pg_stmt mirrors pg_stmt");
_Static_assert(offsetof(struct gtm_pg_stmt, params) == offsetof(struct pg_stmt, params),
               "gtm_pg_stmt mirrors pg_stmt");

int host_pg_query(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmt, gtm_pg_done_fn done,
                  void *arg)
{
    return submit(mod, req, stmt, 1, 0, done, arg);
}

int host_pg_tx(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmts, size_t n,
               gtm_pg_done_fn done, void *arg)
{
    return submit(mod, req, stmts, n, 1, done, arg);
}

int host_pg_status(const struct gtm_pg_result *r) { return r->status; }

const char *host_pg_sqlstate(const struct gtm_pg_result *r)
{
    return r->inner ? pg_result_sqlstate(r->inner) : "";
}

const char *host_pg_message(const struct gtm_pg_result *r)
{
    return r->message ? r->message : "";
}

int host_pg_failed_stmt(const struct gtm_pg_result *r)
{
    return r->inner ? pg_result_failed_stmt(r->inner) : -1;
}

int host_pg_ntuples(const struct gtm_pg_result *r, size_t stmt)
{
    return r->inner && stmt < pg_result_nstmts(r->inner) ? pg_result_ntuples(r->inner, stmt) : 0;
}

static int cell_ok(const struct gtm_pg_result *r, size_t stmt, int row, int col)
{
    return r->inner && stmt < pg_result_nstmts(r->inner) && row >= 0 && row < pg_result_ntuples(r->inner, stmt) &&
           col >= 0 && col < pg_result_nfields(r->inner, stmt);
}

const char *host_pg_value(const struct gtm_pg_result *r, size_t stmt, int row, int col)
{
    return cell_ok(r, stmt, row, col) ? pg_result_value(r->inner, stmt, row, col) : "";
}

int host_pg_isnull(const struct gtm_pg_result *r, size_t stmt, int row, int col)
{
    return cell_ok(r, stmt, row, col) ? pg_result_isnull(r->inner, stmt, row, col) : 1;
}

int host_pg_length(const struct gtm_pg_result *r, size_t stmt, int row, int col)
{
    return cell_ok(r, stmt, row, col) ? pg_result_length(r->inner, stmt, row, col) : 0;
}

long host_pg_affected(const struct gtm_pg_result *r, size_t stmt)
{
    return r->inner && stmt < pg_result_nstmts(r->inner) ? pg_result_affected(r->inner, stmt) : -1;
}

void host_respond_pg_error(struct gtm_req *req, const struct gtm_pg_result *r)
{
    switch (r->status) {
    case GTM_EQUERY:
        log_msg(LOG_ERROR, req->id, req->mod ? module_name(req->mod) : NULL, "database refused a statement: %s (%s)",
                host_pg_message(r), host_pg_sqlstate(r));
        response_error(req, 500, "Internal server error");
        return;
    case GTM_EBUSY:
        response_add_header(req, "retry-after", "1");
        response_error(req, 503, "The database is busy, try again shortly");
        return;
    case GTM_ETIMEDOUT:
        response_add_header(req, "retry-after", "2");
        response_error(req, 503, "The database did not answer in time, try again shortly");
        return;
    default:
        log_msg(LOG_WARN, req->id, NULL, "database unavailable: %s", host_pg_message(r));
        response_add_header(req, "retry-after", "2");
        if (r->inner && pg_result_outcome_unknown(r->inner)) {
            response_error(req, 503, "The database went away while the change was being saved: it may or may not "
                                     "have been stored; read it back before trying again");
            return;
        }
        response_error(req, 503, r->inner || req->srv->pg ? "The database is unavailable, try again shortly"
                                                          : "The database is not configured (DATABASE_URL)");
        return;
    }
}
