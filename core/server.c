#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include "fetch/httpc.h"
#include "http/conn.h"
#include "http/request.h"
#include "http/response.h"
#include "log.h"
#include "metrics.h"
#include "modules/module_host.h"
#include "db/migrate.h"
#include "gen/gen.h"
#include "llm/llm.h"
#include "pg/pg.h"
#include "prompt/prompt.h"
#include "site/site.h"
#include "tls/tls.h"

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool server_origin_allowed(const struct server *srv, const char *origin)
{
    for (size_t i = 0; i < srv->cfg->n_cors_origins; i++) {
        const char *o = srv->cfg->cors_origins[i];
        if (strcmp(o, "*") == 0 || strcmp(o, origin) == 0) {
            return true;
        }
    }
    return false;
}

/* --- listeners --- */

static void on_connection(uv_stream_t *s, int status)
{
    struct listener *l = s->data;
    if (status < 0) {
        log_msg(LOG_WARN, NULL, NULL, "accept failed: %s", uv_strerror(status));
        return;
    }
    conn_accept(l);
}

static int listener_open(struct server *srv, struct listener *l, const struct listen_spec *spec,
                         const char *var)
{
    l->srv = srv;
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    l->open = true;
    /* a worker adopts the socket its master bound; alone, gtmd binds its own */
    int rc = spec->fd >= 0 ? uv_tcp_open(&l->tcp, spec->fd) : uv_tcp_bind(&l->tcp, (const struct sockaddr *)&spec->addr, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
    }
    if (rc < 0) {
        fprintf(stderr, "gtmd: %s: cannot listen on %s: %s\n", var, spec->text, uv_strerror(rc));
        return -1;
    }
    log_msg(LOG_INFO, NULL, NULL, "listening on %s (%s)", spec->text, l->admin ? "admin" : l->tls ? "https" : "http");
    return 0;
}

static void listener_close(struct listener *l)
{
    if (l->open) {
        l->open = false;
        uv_close((uv_handle_t *)&l->tcp, NULL);
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* --- shutdown --- */

static void on_sighup(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    (void)signum;
    if (srv->draining) {
        return;
    }
    int n = modules_reload_dir(srv, srv->cfg->module_dir);
    uint64_t t0 = uv_hrtime();
    if (n > 0) {
        openapi_build(srv);
    }
    log_msg(LOG_INFO, NULL, NULL, "SIGHUP: %d module file%s (re)loaded from %s; /openapi.json rebuilt in %.2f ms",
            n < 0 ? 0 : n, n == 1 ? "" : "s", srv->cfg->module_dir, (double)(uv_hrtime() - t0) / 1e6);
}

static void on_drain_delay_over(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_msg(LOG_INFO, NULL, NULL, "drain delay over: shutting down gracefully");
    server_shutdown(srv);
}

/* With GTM_DRAIN_DELAY, the first signal only fails /ready, so that a load
 * balancer stops sending before the listeners close; a second one goes on. */
static void on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (!srv->leaving && srv->cfg->drain_delay > 0) {
        srv->leaving = true;
        log_msg(LOG_INFO, NULL, NULL, "%s: /ready answers 503 for %.3g s, then shutting down gracefully", name,
                srv->cfg->drain_delay);
        uv_timer_start(&srv->drain_timer, on_drain_delay_over, (uint64_t)(srv->cfg->drain_delay * 1000.0), 0);
        return;
    }
    log_msg(LOG_INFO, NULL, NULL, "%s: shutting down gracefully", name);
    server_shutdown(srv);
}

/* The generation services first: closing them cancels their HTTP calls. */
static void server_close_services(struct server *srv)
{
    if (srv->gen) {
        gen_close(srv->gen);
        srv->gen = NULL;
    }
    if (srv->llm) {
        llm_close(srv->llm);
        srv->llm = NULL;
    }
    if (srv->site) {
        site_close(srv->site);
        srv->site = NULL;
    }
}

static void server_finish(struct server *srv)
{
    if (srv->stopped) {
        return;
    }
    srv->stopped = true;
    uv_timer_stop(&srv->shutdown_timer);
    uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&srv->drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->module_drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sighup, NULL);
    modules_unload_all(srv);
    server_close_services(srv);
    if (srv->httpc) {
        httpc_close(srv->httpc, NULL, NULL);
        srv->httpc = NULL;
    }
    if (srv->pg) {
        pg_pool_close(srv->pg, NULL, NULL);
        srv->pg = NULL;
    }
    log_msg(LOG_INFO, NULL, NULL, "stopped after %llu requests", (unsigned long long)srv->n_requests);
    log_detach_loop();
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_msg(LOG_WARN, NULL, NULL, "shutdown timeout: closing %u connections still open", srv->n_conns);
    while (srv->conns) {
        conn_abort(srv->conns);
    }
}

void server_shutdown(struct server *srv)
{
    if (srv->draining) {
        return;
    }
    srv->draining = true;
    srv->leaving = true;
    uv_timer_stop(&srv->drain_timer);
    listener_close(&srv->plain);
    listener_close(&srv->secure);
    listener_close(&srv->admin);
    struct conn *c = srv->conns;
    while (c) {
        struct conn *next = c->next;
        conn_drain(c);
        c = next;
    }
    if (srv->n_conns == 0) {
        server_finish(srv);
        return;
    }
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timeout,
                   (uint64_t)(srv->cfg->shutdown_timeout * 1000.0), 0);
}

void server_conn_gone(struct server *srv)
{
    srv->n_conns--;
    if (srv->draining && srv->n_conns == 0) {
        server_finish(srv);
    }
}

/* Undoes a server_init that failed halfway: closes what was opened and lets
 * the loop finish the closes, so nothing is left behind. */
static int server_init_failed(struct server *srv)
{
    listener_close(&srv->plain);
    listener_close(&srv->secure);
    listener_close(&srv->admin);
    modules_unload_all(srv);
    server_close_services(srv);
    if (srv->httpc) {
        httpc_close(srv->httpc, NULL, NULL);
        srv->httpc = NULL;
    }
    if (srv->pg) {
        pg_pool_close(srv->pg, NULL, NULL);
        srv->pg = NULL;
    }
    log_detach_loop();
    uv_run(srv->loop, UV_RUN_DEFAULT);
    router_free(&srv->router);
    router_free(&srv->admin_router);
    openapi_free(&srv->openapi);
    metrics_free(srv->metrics);
    srv->metrics = NULL;
    if (srv->prompts) {
        prompts_free(srv->prompts);
        srv->prompts = NULL;
    }
    if (srv->secure.tls) {
        tls_ctx_free(srv->secure.tls);
        srv->secure.tls = NULL;
    }
    return -1;
}

int server_init(struct server *srv, uv_loop_t *loop, const struct config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    srv->start_ns = now_ns();
    if (getrandom(srv->id_seed, sizeof srv->id_seed, 0) != (ssize_t)sizeof srv->id_seed) {
        uint64_t t = now_ns() ^ (uint64_t)getpid();
        memcpy(srv->id_seed, &t, sizeof srv->id_seed);
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    log_attach_loop(loop);

    char err[512];
    srv->metrics = metrics_new();
    if (!srv->metrics || admin_routes_add(srv, err, sizeof err) < 0 || openapi_routes_add(srv, err, sizeof err) < 0) {
        fprintf(stderr, "gtmd: %s\n", err);
        return server_init_failed(srv);
    }

    srv->httpc = httpc_new(loop);
    if (!srv->httpc) {
        fprintf(stderr, "gtmd: cannot start the outbound HTTP client\n");
        return server_init_failed(srv);
    }

    if (cfg->database_url) {
        char conninfo[4096];
        if (!db_conninfo_normalize(cfg->database_url, conninfo, sizeof conninfo)) {
            fprintf(stderr, "gtmd: DATABASE_URL: too long or malformed\n");
            return server_init_failed(srv);
        }
        struct pg_pool_config pc = {.conninfo = conninfo, .size = cfg->pg_pool_size, .commit_marks = true};
        srv->pg = pg_pool_new(loop, &pc, err, sizeof err);
        if (!srv->pg) {
            fprintf(stderr, "gtmd: DATABASE_URL: %s\n", err);
            return server_init_failed(srv);
        }
    }

    srv->schema_latest = migrate_latest_version(cfg->sql_dir, err, sizeof err);

    struct llm_config lc;
    struct site_config sc;
    if (llm_config_from_env(&lc, err, sizeof err) < 0 || site_config_from_env(&sc, err, sizeof err) < 0) {
        fprintf(stderr, "gtmd: %s\n", err);
        return server_init_failed(srv);
    }
    srv->prompts = prompts_load(cfg->prompt_dir, err, sizeof err);
    if (!srv->prompts) {
        fprintf(stderr, "gtmd: GTM_PROMPT_DIR: %s\n", err);
        return server_init_failed(srv);
    }
    srv->llm = llm_new(loop, srv->httpc, &lc);
    srv->site = site_new(loop, srv->httpc, srv->pg, &sc);
    srv->gen = gen_new(loop, srv->site, srv->llm, srv->prompts, (unsigned)(cfg->generate_timeout * 1000.0));
    if (!srv->llm || !srv->site || !srv->gen) {
        fprintf(stderr, "gtmd: out of memory starting the generation services\n");
        return server_init_failed(srv);
    }
    if (lc.n_providers == 0) {
        log_msg(LOG_WARN, NULL, NULL, "no LLM provider is configured: generation answers 503 until one of "
                "OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or OPENAI_BASE_URL is set");
    }

    int loaded = modules_load_dir(srv, cfg->module_dir);
    if (loaded < 0) {
        if (getenv("GTM_MODULE_DIR") && *getenv("GTM_MODULE_DIR")) {
            fprintf(stderr, "gtmd: GTM_MODULE_DIR: cannot read %s: %s\n", cfg->module_dir, strerror(errno));
            return server_init_failed(srv);
        }
        log_msg(LOG_WARN, NULL, NULL, "no module directory at %s: serving core routes only", cfg->module_dir);
    }
    if (openapi_build(srv) < 0) {
        fprintf(stderr, "gtmd: cannot build the OpenAPI document\n");
        return server_init_failed(srv);
    }

    if (cfg->tls_listen.set) {
        srv->secure.tls = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof err);
        if (!srv->secure.tls) {
            fprintf(stderr, "gtmd: %s\n", err);
            return server_init_failed(srv);
        }
    }
    srv->admin.admin = true;
    if (listener_open(srv, &srv->plain, &cfg->listen, "GTM_LISTEN") < 0 ||
        (cfg->tls_listen.set && listener_open(srv, &srv->secure, &cfg->tls_listen, "GTM_TLS_LISTEN") < 0) ||
        (cfg->admin_listen.set && listener_open(srv, &srv->admin, &cfg->admin_listen, "GTM_ADMIN_LISTEN") < 0)) {
        return server_init_failed(srv);
    }

    uv_timer_init(loop, &srv->shutdown_timer);
    srv->shutdown_timer.data = srv;
    uv_timer_init(loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_timer_init(loop, &srv->module_drain_timer);
    srv->module_drain_timer.data = srv;
    uv_signal_init(loop, &srv->sigterm);
    uv_signal_init(loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_init(loop, &srv->sighup);
    srv->sighup.data = srv;
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    return 0;
}

int server_run(struct server *srv)
{
    uv_run(srv->loop, UV_RUN_DEFAULT);
    request_pool_drain(srv);
    metrics_free(srv->metrics);
    srv->metrics = NULL;
    router_free(&srv->admin_router);
    if (srv->prompts) {
        prompts_free(srv->prompts);
        srv->prompts = NULL;
    }
    router_free(&srv->router);
    openapi_free(&srv->openapi);
    if (srv->secure.tls) {
        tls_ctx_free(srv->secure.tls);
    }
    buf_free(&srv->scratch);
    log_flush();
    return srv->exit_code;
}
