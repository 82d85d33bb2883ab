/* gtmd: the Blossomer GTM API server. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "db/migrate.h"
#include "gtm/module.h"
#include "gtm_paths.h"
#include "log.h"
#include "master.h"
#include "reload_cmd.h"
#include "server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gtmd [serve]      serve the API (the default)\n"
            "       gtmd migrate      apply the sql/ migrations to DATABASE_URL and exit\n"
            "       gtmd reload       ask the running gtmd (on GTM_ADMIN_LISTEN) to reload changed modules\n"
            "       gtmd --version    print the version and module ABI\n"
            "       gtmd --help       this text\n"
            "\n"
            "Settings come from the environment: GTM_LISTEN (default 127.0.0.1:8000),\n"
            "GTM_TLS_LISTEN with GTM_TLS_CERT and GTM_TLS_KEY, GTM_MODULE_DIR, GTM_MAX_BODY,\n"
            "GTM_MAX_CONNECTIONS, GTM_HEADER_TIMEOUT, GTM_BODY_TIMEOUT, GTM_IDLE_TIMEOUT,\n"
            "GTM_SHUTDOWN_TIMEOUT, GTM_DRAIN_DELAY, GTM_MODULE_DRAIN_TIMEOUT, GTM_LOG_LEVEL, CORS_ORIGINS,\n"
            "DATABASE_URL, GTM_SQL_DIR.\n"
            "See README.md.\n");
}

/* One worker's life in this process. */
static int worker_main(struct config *cfg)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static struct server srv;
    int rc;
    if (server_init(&srv, &loop, cfg) < 0) {
        log_flush();
        rc = 2;
    } else {
        rc = server_run(&srv);
    }
    uv_loop_close(&loop);
    return rc;
}

static int serve(void)
{
    struct config cfg;
    if (config_load_cli(&cfg) != 0) {
        return 2;
    }
    log_set_level(cfg.log_level);
    if (cfg.database_url) {
        /* Before the loop runs, so blocking here costs nothing. */
        char msg[1024];
        int st = migrate_check(cfg.database_url, cfg.sql_dir, 3, msg, sizeof msg);
        if (st == MIGRATE_BEHIND || st == MIGRATE_ERROR) {
            fprintf(stderr, "gtmd: %s\n", msg);
            config_free(&cfg);
            return 2;
        }
        if (st == MIGRATE_UNREACHABLE) {
            log_msg(LOG_WARN, NULL, NULL, "%s; serving anyway, database routes answer 503 until it is reachable",
                    msg);
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "gtmd: libcurl failed to initialise\n");
        return 1;
    }
    int rc = cfg.workers > 1 ? master_run(&cfg, worker_main) : worker_main(&cfg);
    config_free(&cfg);
    curl_global_cleanup();
    return rc;
}

static int migrate(void)
{
    struct config cfg;
    char err[1024];
    if (config_load_cli(&cfg) != 0) {
        return 2;
    }
    int rc = 0;
    if (!cfg.database_url) {
        fprintf(stderr, "gtmd: DATABASE_URL: required by gtmd migrate "
                        "(postgresql://user:password@host:port/dbname)\n");
        rc = 2;
    } else if (migrate_run(cfg.database_url, cfg.sql_dir, stdout, err, sizeof err) < 0) {
        fprintf(stderr, "gtmd migrate: %s\n", err);
        rc = 1;
    }
    config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argc == 2 ? argv[1] : "serve";
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("gtmd %s (module ABI %d.%d, %s)\n", GTM_VERSION, GTM_ABI_MAJOR, GTM_ABI_MINOR,
               GTM_BUILD_SIGNATURE);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) {
        return serve();
    }
    if (strcmp(cmd, "migrate") == 0) {
        return migrate();
    }
    if (strcmp(cmd, "reload") == 0) {
        return reload_command();
    }
    fprintf(stderr, "gtmd: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
