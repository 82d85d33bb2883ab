/* Settings from the environment (CONTRACT §5), read and checked once at start.
 * A bad value is one line naming the variable, and gtmd exits 2. */
#ifndef GTM_CONFIG_H
#define GTM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct listen_spec {
    bool set;
    int fd;                         /* a socket bound by the master, or -1 */
    char text[128];                 /* as given, for logs */
    struct sockaddr_storage addr;
};

struct config {
    struct listen_spec listen;      /* GTM_LISTEN */
    struct listen_spec tls_listen;  /* GTM_TLS_LISTEN */
    struct listen_spec admin_listen;/* GTM_ADMIN_LISTEN ("off": none) */
    const char *tls_cert;           /* GTM_TLS_CERT */
    const char *tls_key;            /* GTM_TLS_KEY */
    int workers;                    /* GTM_WORKERS */
    const char *module_dir;         /* GTM_MODULE_DIR or the build/install default */
    const char *sql_dir;            /* GTM_SQL_DIR or the build/install default */
    bool sql_dir_owned;
    const char *database_url;       /* DATABASE_URL, or NULL */
    unsigned pg_pool_size;          /* GTM_PG_POOL_SIZE: connections per worker */
    const char *prompt_dir;         /* GTM_PROMPT_DIR or the build/install default */
    bool prompt_dir_owned;
    double generate_timeout;        /* GTM_GENERATE_TIMEOUT: seconds for one generation */
    size_t max_body;                /* GTM_MAX_BODY */
    unsigned max_connections;       /* GTM_MAX_CONNECTIONS */
    double shutdown_timeout;        /* seconds: GTM_SHUTDOWN_TIMEOUT */
    double module_drain_timeout;    /* seconds a replaced module may keep requests: GTM_MODULE_DRAIN_TIMEOUT */
    double drain_delay;             /* seconds of /ready 503 before the listeners close: GTM_DRAIN_DELAY */
    double header_timeout;          /* GTM_HEADER_TIMEOUT */
    double body_timeout;            /* GTM_BODY_TIMEOUT */
    double idle_timeout;            /* GTM_IDLE_TIMEOUT */
    char **cors_origins;            /* CORS_ORIGINS, comma-separated */
    size_t n_cors_origins;
    int log_level;                  /* GTM_LOG_LEVEL */
};

/* Fills c from the environment.  0, or -1 with a one-line reason in err. */
int config_load(struct config *c, char *err, size_t errlen);
/* For the commands: 0, or 2 after printing the reason and freeing c. */
int config_load_cli(struct config *c);
void config_free(struct config *c);

/* Parsers, exposed for tests.  Each returns 0 or -1. */
int config_parse_listen(const char *text, struct listen_spec *out);
int config_parse_size(const char *text, size_t *out);
int config_parse_seconds(const char *text, double *out);
int config_parse_uint(const char *text, unsigned long max, unsigned long *out);

/* Where the binary's modules live when no GTM_MODULE_DIR is set: the build
 * tree's when the binary runs from it, else the installed one. */
const char *config_default_module_dir(void);
/* Likewise for the data directories (sql/, prompts/): the source tree's when
 * the binary runs from its build tree, else the installed copy. */
const char *config_default_data_dir(const char *sub);

#endif
