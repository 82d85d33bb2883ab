/* The operator routes: /ready on the public listeners (load balancers ask
 * it), /health/detailed and /metrics only on GTM_ADMIN_LISTEN (they show
 * what the public need not see), and POST /admin/reload there for gtmd reload. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/httpc.h"
#include "gen/gen.h"
#include "gtm_paths.h"
#include "http/request.h"
#include "http/response.h"
#include "llm/llm.h"
#include "log.h"
#include "metrics.h"
#include "modules/module_host.h"
#include "pg/pg.h"
#include "server.h"

static const char *breaker_name(int state)
{
    return state == LLM_OPEN ? "open" : state == LLM_HALF_OPEN ? "half_open" : "closed";
}

/* --- /ready --- */

static void ready_checked(void *arg, const struct pg_result *res)
{
    struct gtm_req *r = arg;
    struct server *srv = r->srv;
    if (r->state == REQ_DISPATCHED) {
        if (pg_result_status(res) != PG_OK) {
            response_add_header(r, "retry-after", "2");
            char detail[600];
            snprintf(detail, sizeof detail, "The database is not ready: %s", pg_result_message(res));
            response_error(r, 503, detail);
        } else {
            int version = atoi(pg_result_value(res, 0, 0, 0));
            if (version < srv->schema_latest) {
                char detail[200];
                snprintf(detail, sizeof detail,
                         "The database schema is at version %d, this gtmd needs %d: run gtmd migrate", version,
                         srv->schema_latest);
                response_add_header(r, "retry-after", "10");
                response_error(r, 503, detail);
            } else {
                static const char ok[] = "{\"status\":\"ready\"}";
                response_send(r, 200, "application/json", ok, sizeof ok - 1);
            }
        }
    }
    request_unref(r);
}

static void route_ready(void *state, struct gtm_req *r)
{
    struct server *srv = state;
    if (srv->leaving) {
        response_error(r, 503, "The server is shutting down");
        return;
    }
    if (!srv->pg) {
        response_error(r, 503, "The database is not configured: set DATABASE_URL");
        return;
    }
    if (srv->schema_latest < 0) {
        response_error(r, 503, "The migrations cannot be read: check GTM_SQL_DIR");
        return;
    }
    /* reads a table gtmd migrate creates, so an unmigrated database answers 503 too */
    static const char sql[] = "SELECT coalesce(max(version), 0) FROM gtm_schema_migrations";
    struct pg_stmt stmt = {sql, 0, NULL};
    request_ref(r);
    int rc = pg_pool_query(srv->pg, &stmt, 2000, ready_checked, r, NULL);
    if (rc != 0) {
        request_unref(r);
        response_add_header(r, "retry-after", "2");
        response_error(r, 503, "The database is not ready: its queue is full");
    }
}

/* --- /health/detailed --- */

static void route_health_detailed(void *state, struct gtm_req *r)
{
    struct server *srv = state;
    json_t *doc = json_object();
    json_t *db = json_object();
    bool healthy = true;
    json_object_set_new(db, "configured", json_boolean(srv->pg != NULL));
    if (srv->pg) {
        struct pg_pool_stats st;
        pg_pool_get_stats(srv->pg, &st);
        bool up = pg_pool_up(srv->pg);
        healthy &= up;
        json_object_set_new(db, "up", json_boolean(up));
        json_object_set_new(db, "connections_up", json_integer(st.connections_up));
        json_object_set_new(db, "busy", json_integer(st.busy));
        json_object_set_new(db, "waiting", json_integer(st.waiting));
        json_object_set_new(db, "ops_done", json_integer((json_int_t)st.ops_done));
        json_object_set_new(db, "ops_failed", json_integer((json_int_t)st.ops_failed));
        json_object_set_new(db, "reconnects", json_integer((json_int_t)st.reconnects));
        json_t *doubt = json_object();
        json_object_set_new(doubt, "total", json_integer((json_int_t)st.in_doubt));
        json_object_set_new(doubt, "committed", json_integer((json_int_t)st.in_doubt_committed));
        json_object_set_new(doubt, "aborted", json_integer((json_int_t)st.in_doubt_aborted));
        json_object_set_new(doubt, "unknown", json_integer((json_int_t)st.in_doubt_unknown));
        json_object_set_new(db, "commits_in_doubt", doubt);
    }
    json_t *providers = json_array();
    if (srv->llm) {
        struct llm_provider_status ps[LLM_MAX_PROVIDERS];
        size_t n = llm_status(srv->llm, ps, LLM_MAX_PROVIDERS);
        for (size_t i = 0; i < n; i++) {
            healthy &= ps[i].breaker != LLM_OPEN;
            json_array_append_new(providers, json_pack("{ss ss ss sI sI sI sI sI}", "name", ps[i].name, "model",
                                                       ps[i].model, "breaker", breaker_name(ps[i].breaker),
                                                       "consecutive_failures", (json_int_t)ps[i].consecutive_failures,
                                                       "calls", (json_int_t)ps[i].calls, "failures",
                                                       (json_int_t)ps[i].failures, "prompt_tokens",
                                                       (json_int_t)ps[i].prompt_tokens, "completion_tokens",
                                                       (json_int_t)ps[i].completion_tokens));
        }
    }
    json_t *modules = json_array();
    for (const struct gtm_mod *m = srv->mods; m; m = m->next) {
        json_t *mod = json_pack("{ss ss sI ss}", "name", module_name(m), "version",
                                m->desc->version ? m->desc->version : "", "generation", (json_int_t)m->generation,
                                "path", m->path);
        if (mod && m->reload_error) {
            json_object_set_new(mod, "reload_error", json_string(m->reload_error));
        }
        json_array_append_new(modules, mod);
    }
    json_t *refused = json_array();
    for (const struct refused_file *f = srv->refused; f; f = f->next) {
        json_array_append_new(refused, json_pack("{ss ss?}", "path", f->path, "error", f->error));
    }
    json_object_set_new(doc, "refused_module_files", refused);
    json_object_set_new(doc, "status", json_string(healthy ? "ok" : "degraded"));
    json_object_set_new(doc, "version", json_string(GTM_VERSION));
    json_object_set_new(doc, "abi", json_pack("{si si}", "major", GTM_ABI_MAJOR, "minor", GTM_ABI_MINOR));
    json_object_set_new(doc, "pid", json_integer(getpid()));
    json_object_set_new(doc, "uptime_s", json_real((double)(now_ns() - srv->start_ns) / 1e9));
    json_object_set_new(doc, "workers", json_integer(srv->cfg->workers));
    json_object_set_new(doc, "connections", json_integer(srv->n_conns));
    json_object_set_new(doc, "requests", json_integer((json_int_t)srv->n_requests));
    json_object_set_new(doc, "generations_in_flight", json_integer(srv->gen ? gen_runs(srv->gen) : 0));
    json_object_set_new(doc, "database", db);
    json_object_set_new(doc, "providers", providers);
    json_object_set_new(doc, "modules", modules);
    response_json(r, 200, doc);
}

/* --- /metrics --- */

static void gauge(struct buf *o, const char *name, const char *help, double v)
{
    buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void counter(struct buf *o, const char *name, const char *help, unsigned long long v)
{
    buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, v);
}

static void route_metrics(void *state, struct gtm_req *r)
{
    struct server *srv = state;
    struct buf o = {0};
    metrics_write(srv->metrics, &o);
    gauge(&o, "gtm_uptime_seconds", "Seconds since this worker started.", (double)(now_ns() - srv->start_ns) / 1e9);
    gauge(&o, "gtm_connections_open", "Client connections open now.", srv->n_conns);
    counter(&o, "gtm_connections_refused_total", "Connections refused at GTM_MAX_CONNECTIONS.", srv->refused_conns);
    counter(&o, "gtm_log_lines_dropped_total", "Log lines stderr could not take.", log_dropped());
    if (srv->pg) {
        struct pg_pool_stats st;
        pg_pool_get_stats(srv->pg, &st);
        gauge(&o, "gtm_pg_up", "1 while a database connection is up.", pg_pool_up(srv->pg));
        gauge(&o, "gtm_pg_connections_up", "Database connections up.", st.connections_up);
        gauge(&o, "gtm_pg_busy", "Database connections running a statement.", st.busy);
        gauge(&o, "gtm_pg_waiting", "Statements waiting for a connection.", st.waiting);
        buf_printf(&o, "# HELP gtm_pg_ops_total Database operations by outcome.\n# TYPE gtm_pg_ops_total counter\n"
                       "gtm_pg_ops_total{outcome=\"done\"} %llu\ngtm_pg_ops_total{outcome=\"failed\"} %llu\n",
                   (unsigned long long)st.ops_done, (unsigned long long)st.ops_failed);
        counter(&o, "gtm_pg_reconnects_total", "Database sessions re-established.", st.reconnects);
        buf_printf(&o, "# HELP gtm_pg_commits_in_doubt_total Writes whose session died during COMMIT, by what "
                       "the database said of them.\n# TYPE gtm_pg_commits_in_doubt_total counter\n"
                       "gtm_pg_commits_in_doubt_total{outcome=\"committed\"} %llu\n"
                       "gtm_pg_commits_in_doubt_total{outcome=\"aborted\"} %llu\n"
                       "gtm_pg_commits_in_doubt_total{outcome=\"unknown\"} %llu\n",
                   (unsigned long long)st.in_doubt_committed, (unsigned long long)st.in_doubt_aborted,
                   (unsigned long long)st.in_doubt_unknown);
    }
    if (srv->httpc) {
        struct httpc_stats hs;
        httpc_get_stats(srv->httpc, &hs);
        counter(&o, "gtm_outbound_calls_total", "Outbound HTTP calls started.", hs.calls_started);
        gauge(&o, "gtm_outbound_calls_active", "Outbound HTTP calls in flight.", (double)httpc_active(srv->httpc));
    }
    if (srv->llm) {
        struct llm_provider_status ps[LLM_MAX_PROVIDERS];
        size_t n = llm_status(srv->llm, ps, LLM_MAX_PROVIDERS);
        buf_printf(&o, "# HELP gtm_llm_calls_total Provider calls by outcome.\n# TYPE gtm_llm_calls_total counter\n");
        for (size_t i = 0; i < n; i++) {
            buf_printf(&o, "gtm_llm_calls_total{provider=\"%s\",outcome=\"ok\"} %llu\n", ps[i].name,
                       (unsigned long long)(ps[i].calls - ps[i].failures));
            buf_printf(&o, "gtm_llm_calls_total{provider=\"%s\",outcome=\"failed\"} %llu\n", ps[i].name,
                       (unsigned long long)ps[i].failures);
        }
        buf_printf(&o, "# HELP gtm_llm_tokens_total Tokens used, by provider and kind.\n"
                       "# TYPE gtm_llm_tokens_total counter\n");
        for (size_t i = 0; i < n; i++) {
            buf_printf(&o, "gtm_llm_tokens_total{provider=\"%s\",kind=\"prompt\"} %llu\n", ps[i].name,
                       (unsigned long long)ps[i].prompt_tokens);
            buf_printf(&o, "gtm_llm_tokens_total{provider=\"%s\",kind=\"completion\"} %llu\n", ps[i].name,
                       (unsigned long long)ps[i].completion_tokens);
        }
        buf_printf(&o, "# HELP gtm_llm_breaker_state Circuit breaker: 0 closed, 1 open, 2 half-open.\n"
                       "# TYPE gtm_llm_breaker_state gauge\n");
        for (size_t i = 0; i < n; i++) {
            buf_printf(&o, "gtm_llm_breaker_state{provider=\"%s\"} %d\n", ps[i].name, ps[i].breaker);
        }
    }
    gauge(&o, "gtm_generations_in_flight", "Generation runs in flight.", srv->gen ? gen_runs(srv->gen) : 0);
    buf_printf(&o, "# HELP gtm_module_info Loaded modules.\n# TYPE gtm_module_info gauge\n");
    for (const struct gtm_mod *m = srv->mods; m; m = m->next) {
        buf_printf(&o, "gtm_module_info{name=\"%s\",version=\"%s\",generation=\"%u\"} 1\n", module_name(m),
                   m->desc->version ? m->desc->version : "", m->generation);
    }
    buf_printf(&o, "# HELP gtm_module_reloads_total Module files loaded by SIGHUP, by outcome.\n"
                   "# TYPE gtm_module_reloads_total counter\n"
                   "gtm_module_reloads_total{outcome=\"ok\"} %llu\ngtm_module_reloads_total{outcome=\"refused\"} %llu\n",
               (unsigned long long)srv->module_reloads, (unsigned long long)srv->module_reload_failures);
    response_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf_head(&o), buf_pending(&o));
    buf_free(&o);
}

/* gtmd reload: the same as SIGHUP to the master (or to the only process). */
static void route_reload(void *state, struct gtm_req *r)
{
    struct server *srv = state;
    pid_t target = srv->cfg->workers > 1 ? getppid() : getpid();
    if (srv->draining || srv->leaving) {
        response_error(r, 503, "The server is shutting down");
        return;
    }
    if (kill(target, SIGHUP) < 0) {
        response_error(r, 500, "Cannot signal the server: kill failed");
        return;
    }
    response_json(r, 202, json_pack("{ss sI ss}", "status", "reloading", "pid", (json_int_t)target, "module_dir",
                                    srv->cfg->module_dir));
}

static void route_health(void *state, struct gtm_req *r)
{
    (void)state;
    static const char ok[] = "{\"status\":\"ok\"}";
    response_send(r, 200, "application/json", ok, sizeof ok - 1);
}

int admin_routes_add(struct server *srv, char *err, size_t errlen)
{
    if (router_add(&srv->router, "/health", GTM_GET, route_health, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->router, "/ready", GTM_GET, route_ready, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->admin_router, "/health", GTM_GET, route_health, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->admin_router, "/ready", GTM_GET, route_ready, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->admin_router, "/health/detailed", GTM_GET, route_health_detailed, srv, 0, NULL, NULL, err,
                   errlen) < 0 ||
        router_add(&srv->admin_router, "/metrics", GTM_GET, route_metrics, srv, 0, NULL, NULL, err, errlen) < 0 ||
        router_add(&srv->admin_router, "/admin/reload", GTM_POST, route_reload, srv, 0, NULL, NULL, err, errlen) < 0) {
        return -1;
    }
    return 0;
}
