/* One worker: its loop, listeners, connections, routes, modules and clients. */
#ifndef GTM_SERVER_H
#define GTM_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "http/router.h"
#include "openapi/openapi.h"
#include "util/buf.h"

struct conn;
struct gtm_req;
struct tls_ctx;
struct httpc;
struct pg_pool;
struct metrics;
struct llm;
struct site;
struct prompts;
struct gen;
struct gtm_mod;

struct listener {
    uv_tcp_t tcp;
    struct server *srv;
    struct tls_ctx *tls;         /* NULL for plain HTTP */
    bool open;
    bool admin;                  /* serves the admin routes, and only them */
};

struct server {
    uv_loop_t *loop;
    const struct config *cfg;
    struct listener plain, secure, admin;
    struct conn *conns;          /* doubly linked list of live connections */
    unsigned n_conns;
    uint64_t n_requests;
    uint64_t module_reloads;        /* files (re)loaded by SIGHUP */
    uint64_t module_reload_failures;
    uint64_t refused_conns;
    struct router router;
    struct router admin_router;  /* /metrics, /health/detailed: GTM_ADMIN_LISTEN only */
    struct openapi openapi;      /* GET /openapi.json, rebuilt when modules change */
    struct metrics *metrics;
    int schema_latest;           /* the highest migration in GTM_SQL_DIR, for /ready */
    struct gtm_mod *mods;        /* loaded module instances */
    struct refused_file *refused;  /* new files a reload refused, so they are not retried unchanged */
    struct gtm_mod *auth_mod;    /* the module providing authenticate, if any */
    struct gtm_mod *admit_mod;   /* the module providing admit, if any */
    struct httpc *httpc;
    struct pg_pool *pg;          /* NULL without DATABASE_URL */
    struct llm *llm;
    struct site *site;
    struct prompts *prompts;
    struct gen *gen;
    struct gtm_req *free_reqs;   /* recycled request objects */
    unsigned n_free_reqs;
    char read_buf[65536];        /* every socket read lands here first */
    struct buf scratch;          /* response serialisation */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t shutdown_timer;
    uv_timer_t drain_timer;
    uv_timer_t module_drain_timer;  /* drain deadline of replaced modules */
    bool leaving;                   /* a stop was asked for: /ready answers 503 */
    bool draining;
    bool stopped;
    int exit_code;
    uint64_t start_ns;
    uint8_t id_seed[8];
    uint64_t id_counter;
    char date[40];               /* cached "date" header value */
    time_t date_sec;
};

/* Creates listeners, loads modules, installs signals.  0, or -1 after
 * logging why (the caller exits 2). */
int server_init(struct server *srv, uv_loop_t *loop, const struct config *cfg);
/* Runs until shut down; returns the exit status. */
int server_run(struct server *srv);
/* Starts a graceful shutdown (what SIGTERM does). */
void server_shutdown(struct server *srv);
/* Called by connections when they are freed. */
void server_conn_gone(struct server *srv);

/* CORS_ORIGINS holds origin (or "*"). */
bool server_origin_allowed(const struct server *srv, const char *origin);

uint64_t now_ns(void);

/* The operator routes (admin.c): registered on the routers by server_init. */
int admin_routes_add(struct server *srv, char *err, size_t errlen);

#endif
