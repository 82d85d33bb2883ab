/* The site service end to end, on one loop: two page servers on 127.0.0.1
 * in this process (A is on the allow list, B is not), the fake Firecrawl
 * (tests/fakes/fake_firecrawl.py, started and stopped by pid), and a real
 * Postgres for the cache when one is reachable (DATABASE_URL or libpq's PG*
 * variables, as pg_virtualenv exports them; a throwaway database is created,
 * migrated and dropped).  Without a database the cache tests are skipped,
 * or fail when CI is set.
 *
 * connect(2) is interposed for the whole run: any connection to an address
 * other than loopback is refused on the spot and counted, and every test
 * ends by checking the count is 0.  That is how the guard's "refused before
 * connecting" is proven (the private and metadata addresses never reach
 * connect), and how the run is kept off the network. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "db/migrate.h"
#include "fetch/httpc.h"
#include "gtm_paths.h"
#include "pg/pg.h"
#include "site/site.h"

extern char **environ;

#define WATCHDOG_MS 30000
#define FC_KEY "fc-test"

/* ---- connect(2), interposed ---------------------------------------------------- */

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
static connect_fn real_connect;
static unsigned connects_elsewhere; /* attempts to leave loopback: must stay 0 */
static char connect_elsewhere_to[80];

static bool is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return true; /* unix sockets (Postgres) */
}

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
    if (sa && !is_loopback(sa)) {
        connects_elsewhere++;
        char host[INET6_ADDRSTRLEN] = "?";
        const void *addr = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                                    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        inet_ntop(sa->sa_family, addr, host, sizeof(host));
        snprintf(connect_elsewhere_to, sizeof(connect_elsewhere_to), "%s", host);
        errno = ENETUNREACH;
        return -1;
    }
    return real_connect(fd, sa, len);
}

/* ---- page servers ---------------------------------------------------------------- */

struct page_server;

struct srv_conn {
    uv_tcp_t tcp;
    uv_timer_t delay;
    struct page_server *srv;
    char *buf;
    size_t len, cap;
    int open_handles;
    bool closing;
    char *pending; /* a delayed response */
    size_t pending_len;
    struct srv_conn *prev, *next;
};

#define MAX_PATHS 64

struct page_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    unsigned accepted, requests;
    int open_handles;
    struct srv_conn *conns;
    char last_headers[2048];
    struct {
        char path[128];
        unsigned count;
    } hits[MAX_PATHS];
};

static int port_a, port_b; /* for redirect targets */

static void conn_closed(uv_handle_t *h) {
    struct srv_conn *c = h->data;
    if (--c->open_handles == 0) {
        c->srv->open_handles--;
        free(c->buf);
        free(c->pending);
        free(c);
    }
}

static void conn_close(struct srv_conn *c) {
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->delay, conn_closed);
}

static void written(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static void send_bytes(struct srv_conn *c, const char *data, size_t len) {
    if (c->closing)
        return;
    uv_write_t *req = malloc(sizeof(*req) + len);
    assert_non_null(req);
    char *copy = (char *)(req + 1);
    memcpy(copy, data, len);
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, written) != 0) {
        free(req);
        conn_close(c);
    }
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    default: return "Status";
    }
}

/* The whole response in one buffer (one write). */
static char *build_response(int status, const char *headers, const char *body, size_t body_len, size_t *out_len) {
    char head[1024];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s\r\n", status, reason(status),
                     body_len, headers ? headers : "");
    char *msg = malloc((size_t)n + body_len);
    assert_non_null(msg);
    memcpy(msg, head, (size_t)n);
    memcpy(msg + n, body, body_len);
    *out_len = (size_t)n + body_len;
    return msg;
}

static void respond(struct srv_conn *c, int status, const char *headers, const char *body, size_t body_len) {
    size_t len;
    char *msg = build_response(status, headers, body, body_len, &len);
    send_bytes(c, msg, len);
    free(msg);
}

static void respond_html(struct srv_conn *c, const char *html) {
    respond(c, 200, "Content-Type: text/html; charset=utf-8\r\n", html, strlen(html));
}

static void redirect(struct srv_conn *c, const char *location) {
    char headers[512];
    snprintf(headers, sizeof(headers), "Location: %s\r\nContent-Type: text/html\r\n", location);
    respond(c, 302, headers, "<p>moved</p>", 12);
}

static void delayed_fired(uv_timer_t *t) {
    struct srv_conn *c = t->data;
    send_bytes(c, c->pending, c->pending_len);
    free(c->pending);
    c->pending = NULL;
}

static void count_hit(struct page_server *srv, const char *path) {
    srv->requests++;
    for (int i = 0; i < MAX_PATHS; i++) {
        if (srv->hits[i].path[0] == '\0') {
            snprintf(srv->hits[i].path, sizeof(srv->hits[i].path), "%s", path);
            srv->hits[i].count = 1;
            return;
        }
        if (strcmp(srv->hits[i].path, path) == 0) {
            srv->hits[i].count++;
            return;
        }
    }
}

static unsigned hits(const struct page_server *srv, const char *path) {
    for (int i = 0; i < MAX_PATHS && srv->hits[i].path[0]; i++)
        if (strcmp(srv->hits[i].path, path) == 0)
            return srv->hits[i].count;
    return 0;
}

/* Routes (both servers):
 *   /p/NAME[/]          a small company page naming NAME, with nav and footer
 *   /plain /json /image /no-type /only-chrome
 *   /huge/N             HTML whose text is N letters, no spaces
 *   /big/N              an N-byte HTML body
 *   /status/N           status N
 *   /hop/N              302 to /hop/N-1; /hop/0 302s to /p/hops
 *   /to/b /to/localhost-b /to/localhost-a /to/metadata /to/private /to/ftp
 *   /slow/N             /p/slow after N ms
 *   /silent             never answers */
static void route(struct srv_conn *c, const char *path) {
    struct page_server *srv = c->srv;
    count_hit(srv, path);
    char buf[4096];
    if (strncmp(path, "/p/", 3) == 0) {
        char name[64];
        snprintf(name, sizeof(name), "%s", path + 3);
        size_t n = strlen(name);
        if (n && name[n - 1] == '/')
            name[n - 1] = '\0';
        snprintf(buf, sizeof(buf),
                 "<!DOCTYPE html><html><head><title>Local %s</title><script>var x=1;</script></head><body>"
                 "<nav><a href=\"/\">Home</a> <a href=\"/about\">About</a></nav>"
                 "<main><h1>Page %s</h1><p>Hello from page %s on port %d.</p><ul><li>Point one</li></ul></main>"
                 "<footer>&copy; 2024 Local Inc. All rights reserved.</footer></body></html>",
                 name, name, name, srv->port);
        respond_html(c, buf);
    } else if (strcmp(path, "/plain") == 0) {
        const char *t = "Plain text body.\n\n  Second   line.\n";
        respond(c, 200, "Content-Type: text/plain; charset=utf-8\r\n", t, strlen(t));
    } else if (strcmp(path, "/json") == 0) {
        respond(c, 200, "Content-Type: application/json\r\n", "{\"a\":1}", 7);
    } else if (strcmp(path, "/image") == 0) {
        respond(c, 200, "Content-Type: image/png\r\n", "\x89PNG\r\n\x1a\n", 8);
    } else if (strcmp(path, "/no-type") == 0) {
        respond(c, 200, NULL, "<p>Untyped but HTML.</p>", 24);
    } else if (strcmp(path, "/only-chrome") == 0) {
        respond_html(c, "<nav>Home About</nav><script>var a;</script><footer>Privacy Policy</footer>");
    } else if (strncmp(path, "/huge/", 6) == 0) {
        size_t n = strtoull(path + 6, NULL, 10);
        char *html = malloc(n + 16);
        assert_non_null(html);
        memcpy(html, "<p>", 3);
        for (size_t i = 0; i < n; i++)
            html[3 + i] = (char)('a' + i % 26);
        memcpy(html + 3 + n, "</p>", 4);
        respond(c, 200, "Content-Type: text/html\r\n", html, n + 7);
        free(html);
    } else if (strncmp(path, "/big/", 5) == 0) {
        size_t n = strtoull(path + 5, NULL, 10);
        char *body = malloc(n + 1);
        assert_non_null(body);
        memset(body, 'x', n);
        respond(c, 200, "Content-Type: text/html\r\n", body, n);
        free(body);
    } else if (strncmp(path, "/status/", 8) == 0) {
        respond(c, atoi(path + 8), "Content-Type: text/html\r\n", "<p>error page</p>", 17);
    } else if (strncmp(path, "/hop/", 5) == 0) {
        int n = atoi(path + 5);
        if (n == 0)
            snprintf(buf, sizeof(buf), "/p/hops");
        else
            snprintf(buf, sizeof(buf), "/hop/%d", n - 1);
        redirect(c, buf);
    } else if (strcmp(path, "/to/b") == 0) {
        snprintf(buf, sizeof(buf), "http://127.0.0.1:%d/p/b", port_b);
        redirect(c, buf);
    } else if (strcmp(path, "/to/localhost-b") == 0) {
        snprintf(buf, sizeof(buf), "http://localhost:%d/p/b", port_b);
        redirect(c, buf);
    } else if (strcmp(path, "/to/localhost-a") == 0) {
        snprintf(buf, sizeof(buf), "http://localhost:%d/p/via-localhost", port_a);
        redirect(c, buf);
    } else if (strcmp(path, "/to/metadata") == 0) {
        redirect(c, "http://169.254.169.254/latest/meta-data/");
    } else if (strcmp(path, "/to/private") == 0) {
        redirect(c, "http://10.255.255.1/");
    } else if (strcmp(path, "/to/ftp") == 0) {
        redirect(c, "ftp://127.0.0.1/file.txt");
    } else if (strncmp(path, "/slow/", 6) == 0) {
        const char *html = "<p>Slow page.</p>";
        c->pending = build_response(200, "Content-Type: text/html\r\n", html, strlen(html), &c->pending_len);
        uv_timer_start(&c->delay, delayed_fired, strtoull(path + 6, NULL, 10), 0);
    } else if (strcmp(path, "/silent") == 0) {
        /* never answers */
    } else {
        respond(c, 404, "Content-Type: text/html\r\n", "<p>no such page</p>", 19);
    }
}

static void parse_requests(struct srv_conn *c) {
    while (!c->closing) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return;
        size_t head_len = (size_t)(end - c->buf) + 4;
        snprintf(c->srv->last_headers, sizeof(c->srv->last_headers), "%.*s", (int)head_len, c->buf);
        char method[16] = "", path[256] = "";
        sscanf(c->srv->last_headers, "%15s %255s", method, path);
        memmove(c->buf, c->buf + head_len, c->len - head_len);
        c->len -= head_len;
        route(c, path);
    }
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    struct srv_conn *c = h->data;
    if (c->cap - c->len < suggested) {
        c->cap = c->len + suggested;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    struct srv_conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    parse_requests(c);
}

static void srv_accept(uv_stream_t *listener, int status) {
    struct page_server *srv = listener->data;
    if (status < 0)
        return;
    struct srv_conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->delay);
    c->tcp.data = c->delay.data = c;
    c->open_handles = 2;
    srv->open_handles++;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    srv->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static void server_start(struct page_server *srv, uv_loop_t *loop) {
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
    srv->listener.data = srv;
    srv->open_handles = 1;
    assert_int_equal(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 128, srv_accept), 0);
    int len = sizeof(addr);
    assert_int_equal(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &len), 0);
    srv->port = ntohs(addr.sin_port);
}

static void listener_closed(uv_handle_t *h) {
    ((struct page_server *)h->data)->open_handles--;
}

static void server_stop(struct page_server *srv) {
    uv_close((uv_handle_t *)&srv->listener, listener_closed);
    while (srv->conns)
        conn_close(srv->conns);
}

/* ---- the fake Firecrawl ------------------------------------------------------------ */

static pid_t fc_pid;
static int fc_port;

static bool fc_start(char *why, size_t whylen) {
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, whylen, "pipe: %s", strerror(errno));
        return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char script[1024];
    snprintf(script, sizeof(script), "%s/tests/fakes/fake_firecrawl.py", GTM_SOURCE_ROOT);
    char *argv[] = {"/usr/bin/python3", script, "--key", FC_KEY, NULL};
    int rc = posix_spawn(&fc_pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        snprintf(why, whylen, "cannot start %s: %s", argv[0], strerror(rc));
        return false;
    }
    char line[64] = "";
    size_t n = 0;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    while (n < sizeof(line) - 1 && !strchr(line, '\n') && poll(&p, 1, 20000) == 1) {
        ssize_t got = read(fds[0], line + n, sizeof(line) - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
        line[n] = '\0';
    }
    close(fds[0]);
    if (sscanf(line, "PORT %d", &fc_port) != 1) {
        snprintf(why, whylen, "the fake Firecrawl said \"%s\"", line);
        kill(fc_pid, SIGTERM);
        waitpid(fc_pid, NULL, 0);
        fc_pid = 0;
        return false;
    }
    return true;
}

static void fc_stop(void) {
    if (fc_pid > 0) {
        kill(fc_pid, SIGTERM);
        waitpid(fc_pid, NULL, 0);
        fc_pid = 0;
    }
}

/* A blocking request to the fake's control endpoints; the parsed JSON answer. */
static json_t *fc_control(const char *method, const char *path, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fc_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    assert_true(n > 0 && (size_t)n < sizeof(req));
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 65536, len = 0;
    char *resp = malloc(cap);
    ssize_t got;
    while ((got = read(fd, resp + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 1024) {
            cap *= 2;
            resp = realloc(resp, cap);
        }
    }
    close(fd);
    resp[len] = '\0';
    char *json_start = strstr(resp, "\r\n\r\n");
    json_t *doc = json_start ? json_loads(json_start + 4, 0, NULL) : NULL;
    free(resp);
    assert_non_null(doc);
    return doc;
}

static void fc_configure(const char *json) {
    json_decref(fc_control("POST", "/_fake/reset", NULL));
    if (json)
        json_decref(fc_control("POST", "/_fake/config", json));
}

static size_t fc_request_count(void) {
    json_t *doc = fc_control("GET", "/_fake/requests", NULL);
    size_t n = (size_t)json_integer_value(json_object_get(doc, "count"));
    json_decref(doc);
    return n;
}

/* ---- the database ------------------------------------------------------------------- */

static char *db_conninfo; /* the throwaway database, or NULL */
static char db_name[64];
static char *base_conninfo;

static char *conninfo_with_dbname(const char *dbname) {
    PQconninfoOption *opts = PQconninfoParse(base_conninfo, NULL);
    size_t cap = 4096, len = 0;
    char *out = calloc(1, cap);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !o->val[0] || strcmp(o->keyword, "dbname") == 0)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s='", o->keyword);
        for (const char *v = o->val; *v && len + 4 < cap; v++) {
            if (*v == '\'' || *v == '\\')
                out[len++] = '\\';
            out[len++] = *v;
        }
        len += (size_t)snprintf(out + len, cap - len, "' ");
    }
    snprintf(out + len, cap - len, "dbname='%s'", dbname);
    PQconninfoFree(opts);
    return out;
}

static bool db_setup(char *why, size_t whylen) {
    PGconn *c = PQconnectdb(base_conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(why, whylen, "%s", PQerrorMessage(c));
        PQfinish(c);
        return false;
    }
    snprintf(db_name, sizeof(db_name), "gtm_site_test_%d", (int)getpid());
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db_name);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(why, whylen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    if (!ok)
        return false;
    db_conninfo = conninfo_with_dbname(db_name);
    FILE *devnull = fopen("/dev/null", "w");
    char err[512] = "";
    int rc = migrate_run(db_conninfo, GTM_SOURCE_ROOT "/sql", devnull, err, sizeof(err));
    fclose(devnull);
    if (rc != 0) {
        snprintf(why, whylen, "migrations failed: %s", err);
        return false;
    }
    return true;
}

static void db_teardown(void) {
    if (!db_name[0])
        return;
    PGconn *c = PQconnectdb(base_conninfo);
    if (PQstatus(c) == CONNECTION_OK) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db_name);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
    free(db_conninfo);
    db_conninfo = NULL;
}

/* One statement on a blocking connection; the first value of the first row
 * (malloc'd, "" when none), or NULL when it failed. */
static char *db_query(const char *sql, int nparams, const char *const *params) {
    PGconn *c = PQconnectdb(db_conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    char *out = NULL;
    if (st == PGRES_TUPLES_OK)
        out = strdup(PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    else if (st == PGRES_COMMAND_OK)
        out = strdup(PQcmdTuples(r));
    else
        fprintf(stderr, "db_query: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    return out;
}

/* ---- the fixture --------------------------------------------------------------------- */

struct fixture {
    uv_loop_t loop;
    struct page_server a, b;
    struct httpc *httpc;
    uv_timer_t watchdog;
    bool expired;
    bool httpc_closed, pg_closed;
    struct pg_pool *pg;
    struct site *site;
};

static struct fixture *fx;
static bool g_in_api; /* inside a site_* call: done must not run now */

static void watchdog_fired(uv_timer_t *t) {
    (void)t;
    fx->expired = true;
}

static int setup(void **state) {
    (void)state;
    fx = calloc(1, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    server_start(&fx->a, &fx->loop);
    server_start(&fx->b, &fx->loop);
    port_a = fx->a.port;
    port_b = fx->b.port;
    fx->httpc = httpc_new(&fx->loop);
    assert_non_null(fx->httpc);
    uv_timer_init(&fx->loop, &fx->watchdog);
    connects_elsewhere = 0;
    return 0;
}

static void on_httpc_closed(void *arg) {
    ((struct fixture *)arg)->httpc_closed = true;
}

static void on_pg_closed(void *arg) {
    ((struct fixture *)arg)->pg_closed = true;
}

static int teardown(void **state) {
    (void)state;
    if (fx->site)
        site_close(fx->site);
    if (fx->pg)
        pg_pool_close(fx->pg, on_pg_closed, fx);
    httpc_close(fx->httpc, on_httpc_closed, fx);
    server_stop(&fx->a);
    server_stop(&fx->b);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_true(fx->httpc_closed);
    assert_int_equal(uv_loop_close(&fx->loop), 0); /* every handle closed, the site's too */
    unsigned elsewhere = connects_elsewhere;
    free(fx);
    fx = NULL;
    if (elsewhere)
        fail_msg("%u connection(s) tried to leave loopback, last to %s", elsewhere, connect_elsewhere_to);
    return 0;
}

static void run_until(const int *counter, int target) {
    fx->expired = false;
    uv_timer_start(&fx->watchdog, watchdog_fired, WATCHDOG_MS, 0);
    while (*counter < target && !fx->expired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->watchdog);
    assert_false(fx->expired);
}

/* A few more turns: nothing else may arrive. */
static void settle(void) {
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
}

/* A loopback port nothing listens on: bound, then closed. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static struct site_config local_config(void) {
    struct site_config cfg = {0};
    cfg.max_chars = 20000;
    cfg.max_bytes = 1024 * 1024;
    cfg.max_redirects = 5;
    snprintf(cfg.fetch_allow, sizeof(cfg.fetch_allow), "127.0.0.1:%d", port_a);
    return cfg;
}

static struct site *make_site(const struct site_config *cfg) {
    fx->site = site_new(&fx->loop, fx->httpc, fx->pg, cfg);
    assert_non_null(fx->site);
    return fx->site;
}

static char *url_a(const char *path) {
    static char buf[4][256];
    static int next;
    char *out = buf[next++ % 4];
    snprintf(out, 256, "http://127.0.0.1:%d%s", port_a, path);
    return out;
}

struct outcome {
    int calls;
    int status;
    char *text;
    size_t len;
    char source[16];
    char url[512];
    char message[512];
    uint64_t done_ms;
    struct site *close_site; /* closed from inside done when set */
};

static void record(void *arg, const struct site_result *res) {
    struct outcome *o = arg;
    assert_false(g_in_api);
    o->calls++;
    o->status = res->status;
    free(o->text);
    assert_non_null(res->text);
    assert_int_equal(strlen(res->text), res->len);
    o->text = strdup(res->text);
    o->len = res->len;
    snprintf(o->source, sizeof(o->source), "%s", res->source);
    snprintf(o->url, sizeof(o->url), "%s", res->url);
    snprintf(o->message, sizeof(o->message), "%s", res->message ? res->message : "(null)");
    if (res->status != SITE_OK)
        assert_null(strchr(o->message, '\n'));
    o->done_ms = uv_now(&fx->loop);
    if (o->close_site) {
        site_close(o->close_site);
        if (o->close_site == fx->site)
            fx->site = NULL;
    }
}

static void outcome_free(struct outcome *o) {
    free(o->text);
    memset(o, 0, sizeof(*o));
}

static int start(struct site *s, const char *url, unsigned deadline_ms, struct outcome *o, struct site_op **op) {
    g_in_api = true;
    int rc = site_fetch(s, url, deadline_ms, record, o, op);
    g_in_api = false;
    return rc;
}

/* Fetches url and waits for done; returns the loop time it took. */
static uint64_t fetch(struct site *s, const char *url, unsigned deadline_ms, struct outcome *o) {
    outcome_free(o);
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    assert_int_equal(start(s, url, deadline_ms, o, NULL), 0);
    assert_int_equal(o->calls, 0); /* never from inside site_fetch */
    run_until(&o->calls, 1);
    settle();
    assert_int_equal(o->calls, 1);
    return o->done_ms - t0;
}

static void expect_status(const struct outcome *o, int status) {
    if (o->status != status)
        fail_msg("status %d, want %d (message \"%s\", text \"%.80s\")", o->status, status, o->message,
                 o->text ? o->text : "");
}

/* ---- the built-in fetcher ----------------------------------------------------------------- */

static void test_fetch_local_page(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/p/home"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "fetch");
    assert_string_equal(o.url, url_a("/p/home"));
    char want[512];
    snprintf(want, sizeof(want), "Local home\nPage home\nHello from page home on port %d.\n- Point one", port_a);
    assert_string_equal(o.text, want);
    assert_string_equal(o.message, "");
    assert_int_equal(hits(&fx->a, "/p/home"), 1);
    assert_non_null(strcasestr(fx->a.last_headers, "\r\nUser-Agent: gtmd/"));
    assert_non_null(strcasestr(fx->a.last_headers, "\r\nAccept: text/html"));

    /* no scheme: http:// is assumed */
    char bare[128];
    snprintf(bare, sizeof(bare), "127.0.0.1:%d/p/bare", port_a);
    fetch(s, bare, 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.url, url_a("/p/bare"));

    /* plain text, untyped HTML */
    fetch(s, url_a("/plain"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.text, "Plain text body.\nSecond line.");
    fetch(s, url_a("/no-type"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.text, "Untyped but HTML.");
    outcome_free(&o);
}

static void test_content_refused(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/json"), 10000, &o);
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "application/json"));
    assert_string_equal(o.text, "");
    fetch(s, url_a("/image"), 10000, &o);
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "image/png"));
    fetch(s, url_a("/status/404"), 10000, &o);
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "HTTP 404"));
    fetch(s, url_a("/status/500"), 10000, &o);
    expect_status(&o, SITE_EFETCH);
    fetch(s, url_a("/only-chrome"), 10000, &o);
    expect_status(&o, SITE_EEMPTY);
    outcome_free(&o);
}

static void test_invalid_urls(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    const char *bad[] = {"ftp://example.com/", "javascript:alert(1)", "", "localhost", "http://intranet/",
                         "http://localhost:8080/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fetch(s, bad[i], 10000, &o);
        if (o.status != SITE_EINVALID)
            fail_msg("\"%s\": status %d", bad[i], o.status);
    }
    /* arguments site_fetch cannot take: done is not called */
    assert_int_equal(site_fetch(s, NULL, 0, record, &o, NULL), SITE_EINVALID);
    assert_int_equal(site_fetch(s, "example.com", 0, NULL, &o, NULL), SITE_EINVALID);
    assert_int_equal(fx->a.accepted + fx->b.accepted, 0);
    outcome_free(&o);
}

static void test_huge_pages(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    cfg.max_chars = 5000;
    cfg.max_bytes = 256 * 1024;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    /* under max_bytes, far over max_chars: capped exactly */
    fetch(s, url_a("/huge/200000"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_int_equal(o.len, 5000);
    assert_int_equal(o.text[4999], 'a' + 4999 % 26);
    /* over max_bytes: refused, nothing read past the cap */
    fetch(s, url_a("/big/300000"), 10000, &o);
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "larger than 262144 bytes"));
    outcome_free(&o);
}

static void test_deadline(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    uint64_t took = fetch(s, url_a("/slow/5000"), 500, &o);
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "timed out"));
    assert_true(took >= 450 && took < 3000);
    outcome_free(&o);
}

/* ---- the SSRF guard -------------------------------------------------------------------- */

static void test_guard_loopback(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    cfg.fetch_allow[0] = '\0';
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/p/x"), 10000, &o);
    expect_status(&o, SITE_EBLOCKED);
    assert_non_null(strstr(o.message, "refused by the address check"));
    assert_string_equal(o.text, "");
    assert_int_equal(fx->a.accepted, 0);

    /* an allowed address on another port is still refused */
    snprintf(cfg.fetch_allow, sizeof(cfg.fetch_allow), "127.0.0.1:%d", port_a);
    site_close(s);
    s = make_site(&cfg);
    char url_b[128];
    snprintf(url_b, sizeof(url_b), "http://127.0.0.1:%d/p/x", port_b);
    fetch(s, url_b, 10000, &o);
    expect_status(&o, SITE_EBLOCKED);
    assert_int_equal(fx->b.accepted, 0);
    outcome_free(&o);
}

/* Private and metadata addresses never reach connect(2): the interposed
 * connect would count them, and a real attempt would take time. */
static void test_guard_before_connecting(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    const char *urls[] = {"http://10.255.255.1/", "http://169.254.169.254/latest/meta-data/",
                          "http://192.168.1.1:8080/", "http://172.16.0.1/", "http://100.64.0.1/",
                          "http://0.0.0.0:80/", "http://224.0.0.1/", "http://198.18.0.1/", "http://192.0.0.170/"};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct httpc_stats before, after;
        httpc_get_stats(fx->httpc, &before);
        uint64_t took = fetch(s, urls[i], 20000, &o);
        httpc_get_stats(fx->httpc, &after);
        if (o.status != SITE_EBLOCKED)
            fail_msg("%s: status %d (%s)", urls[i], o.status, o.message);
        assert_true(after.addresses_refused > before.addresses_refused);
        assert_int_equal(after.sockets_watched, before.sockets_watched); /* curl never had a socket */
        assert_true(took < 2000);
    }
    assert_int_equal(connects_elsewhere, 0);
    outcome_free(&o);
}

static void test_guard_allow_private(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    cfg.fetch_allow[0] = '\0';
    cfg.allow_private = true;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/p/private-ok"), 10000, &o);
    expect_status(&o, SITE_OK);
    outcome_free(&o);
}

static void test_guard_redirects(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};

    /* allowed first hop, forbidden second hop: refused at the second */
    fetch(s, url_a("/to/b"), 10000, &o);
    expect_status(&o, SITE_EBLOCKED);
    assert_int_equal(hits(&fx->a, "/to/b"), 1);
    assert_int_equal(fx->b.accepted, 0);
    char where[64];
    snprintf(where, sizeof(where), "127.0.0.1:%d", port_b);
    assert_non_null(strstr(o.message, where));

    /* a host name that resolves to loopback, as a redirect target */
    fetch(s, url_a("/to/localhost-b"), 10000, &o);
    expect_status(&o, SITE_EBLOCKED);
    assert_int_equal(fx->b.accepted, 0);

    /* the metadata address and a private one, as redirect targets */
    fetch(s, url_a("/to/metadata"), 10000, &o);
    expect_status(&o, SITE_EBLOCKED);
    assert_non_null(strstr(o.message, "169.254.169.254"));
    fetch(s, url_a("/to/private"), 10000, &o);
    expect_status(&o, SITE_EBLOCKED);

    /* a scheme that is not http(s), as a redirect target */
    fetch(s, url_a("/to/ftp"), 10000, &o);
    expect_status(&o, SITE_EINVALID);
    assert_int_equal(connects_elsewhere, 0);
    outcome_free(&o);
}

/* "localhost:PORT" in the list stands for both loopback addresses. */
static void test_guard_localhost_entry(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    snprintf(cfg.fetch_allow, sizeof(cfg.fetch_allow), "localhost:%d", port_a);
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/to/localhost-a"), 10000, &o);
    expect_status(&o, SITE_OK);
    char want_url[128];
    snprintf(want_url, sizeof(want_url), "http://localhost:%d/p/via-localhost", port_a);
    assert_string_equal(o.url, want_url);
    assert_int_equal(hits(&fx->a, "/p/via-localhost"), 1);
    outcome_free(&o);
}

static void test_redirect_limit(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    cfg.max_redirects = 3;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/hop/2"), 10000, &o); /* 3 redirects */
    expect_status(&o, SITE_OK);
    assert_string_equal(o.url, url_a("/p/hops"));
    assert_non_null(strstr(o.text, "Page hops"));
    fetch(s, url_a("/hop/3"), 10000, &o); /* 4 redirects */
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "more than 3 redirects"));
    assert_int_equal(hits(&fx->a, "/p/hops"), 1);

    cfg.max_redirects = 0;
    site_close(s);
    s = make_site(&cfg);
    fetch(s, url_a("/hop/0"), 10000, &o);
    expect_status(&o, SITE_EFETCH);
    outcome_free(&o);
}

/* ---- Firecrawl -------------------------------------------------------------------------- */

static struct site_config firecrawl_config(const char *key) {
    struct site_config cfg = local_config();
    snprintf(cfg.firecrawl_key, sizeof(cfg.firecrawl_key), "%s", key);
    snprintf(cfg.firecrawl_base, sizeof(cfg.firecrawl_base), "http://127.0.0.1:%d/", fc_port);
    return cfg;
}

static void test_firecrawl(void **state) {
    (void)state;
    const char *url = url_a("/p/fc");
    char config[1024];
    snprintf(config, sizeof(config),
             "{\"pages\": {\"%s\": \"# Fc Title\\n\\n- [Home](/)\\n\\nFirecrawl [text](http://x.example/t) here."
             "\\n![img](http://x.example/i.png)\\n\\nPrivacy Policy\\n\"}}",
             url);
    fc_configure(config);
    struct site_config cfg = firecrawl_config(FC_KEY);
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url, 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "firecrawl");
    assert_string_equal(o.text, "# Fc Title\nFirecrawl text here.");
    assert_string_equal(o.url, url);
    assert_int_equal(fx->a.requests, 0); /* the fetcher was not needed */

    json_t *log = fc_control("GET", "/_fake/requests", NULL);
    assert_int_equal(json_integer_value(json_object_get(log, "count")), 1);
    json_t *req = json_array_get(json_object_get(log, "requests"), 0);
    assert_string_equal(json_string_value(json_object_get(req, "path")), "/v1/scrape");
    assert_string_equal(json_string_value(json_object_get(req, "auth")), "Bearer " FC_KEY);
    assert_string_equal(json_string_value(json_object_get(req, "content_type")), "application/json");
    json_t *want = json_pack("{s:s, s:[s], s:b}", "url", url, "formats", "markdown", "onlyMainContent", 1);
    assert_true(json_equal(json_object_get(req, "body"), want));
    json_decref(want);
    json_decref(log);
    outcome_free(&o);
}

/* Every way Firecrawl can fail ends in the built-in fetcher. */
static void test_firecrawl_fallback(void **state) {
    (void)state;
    const char *configs[] = {
        "{\"mode\": \"error\", \"status\": 500}", "{\"mode\": \"error\", \"status\": 429}",
        "{\"mode\": \"error\", \"status\": 402}", "{\"mode\": \"garbage\"}",
        "{\"mode\": \"unsuccessful\"}",          "{\"mode\": \"empty\"}",
    };
    struct outcome o = {0};
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        fc_configure(configs[i]);
        struct site_config cfg = firecrawl_config(FC_KEY);
        struct site *s = make_site(&cfg);
        unsigned before = hits(&fx->a, "/p/fallback");
        fetch(s, url_a("/p/fallback"), 10000, &o);
        if (o.status != SITE_OK || strcmp(o.source, "fetch") != 0)
            fail_msg("%s: status %d source %s (%s)", configs[i], o.status, o.source, o.message);
        assert_int_equal(hits(&fx->a, "/p/fallback"), before + 1);
        assert_int_equal(fc_request_count(), 1);
        site_close(s);
        fx->site = NULL;
    }

    /* a wrong key: 401 */
    fc_configure(NULL);
    struct site_config cfg = firecrawl_config("fc-wrong");
    struct site *s = make_site(&cfg);
    fetch(s, url_a("/p/fallback"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "fetch");
    site_close(s);

    /* nothing listening at the base URL */
    cfg = firecrawl_config(FC_KEY);
    snprintf(cfg.firecrawl_base, sizeof(cfg.firecrawl_base), "http://127.0.0.1:%d", closed_port());
    s = make_site(&cfg);
    fetch(s, url_a("/p/fallback"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "fetch");

    /* both fail: the fetcher's reason is the answer */
    site_close(s);
    cfg = firecrawl_config(FC_KEY);
    s = make_site(&cfg);
    fc_configure("{\"mode\": \"error\", \"status\": 500}");
    fetch(s, url_a("/status/404"), 10000, &o);
    assert_int_equal(fc_request_count(), 1);
    expect_status(&o, SITE_EFETCH);
    assert_non_null(strstr(o.message, "HTTP 404"));
    outcome_free(&o);
}

/* A Firecrawl that hangs gets two thirds of the deadline; the fetcher the rest. */
static void test_firecrawl_timeout(void **state) {
    (void)state;
    fc_configure("{\"mode\": \"timeout\", \"hang_ms\": 20000}");
    struct site_config cfg = firecrawl_config(FC_KEY);
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    uint64_t took = fetch(s, url_a("/p/after-timeout"), 3000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "fetch");
    assert_true(took >= 1900 && took < 3000);
    outcome_free(&o);
}

/* ---- cancel and close ------------------------------------------------------------------------ */

static void test_cancel(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    struct site_op *op = NULL;

    /* while the page is being fetched */
    assert_int_equal(start(s, url_a("/slow/5000"), 10000, &o, &op), 0);
    assert_non_null(op);
    while (hits(&fx->a, "/slow/5000") == 0)
        uv_run(&fx->loop, UV_RUN_ONCE);
    g_in_api = true;
    site_cancel(op);
    site_cancel(op); /* twice is harmless */
    g_in_api = false;
    assert_int_equal(o.calls, 0);
    run_until(&o.calls, 1);
    settle();
    assert_int_equal(o.calls, 1);
    expect_status(&o, SITE_ECANCELED);

    /* before the loop ever ran */
    outcome_free(&o);
    assert_int_equal(start(s, url_a("/p/never"), 10000, &o, &op), 0);
    g_in_api = true;
    site_cancel(op);
    g_in_api = false;
    run_until(&o.calls, 1);
    settle();
    expect_status(&o, SITE_ECANCELED);

    /* an outcome already settled (but not delivered) is kept */
    outcome_free(&o);
    assert_int_equal(start(s, "ftp://example.com/", 10000, &o, &op), 0);
    site_cancel(op);
    run_until(&o.calls, 1);
    expect_status(&o, SITE_EINVALID);
    outcome_free(&o);
}

static void test_close(void **state) {
    (void)state;
    struct site_config cfg = local_config();
    struct site *s = make_site(&cfg);
    struct outcome o1 = {0}, o2 = {0}, o3 = {0};
    assert_int_equal(start(s, url_a("/slow/5000"), 10000, &o1, NULL), 0);
    assert_int_equal(start(s, url_a("/silent"), 10000, &o2, NULL), 0);
    while (fx->a.requests < 2)
        uv_run(&fx->loop, UV_RUN_ONCE);
    g_in_api = true;
    site_close(s);
    g_in_api = false;
    fx->site = NULL;
    while (o1.calls + o2.calls < 2)
        uv_run(&fx->loop, UV_RUN_ONCE);
    settle();
    assert_int_equal(o1.calls, 1);
    assert_int_equal(o2.calls, 1);
    expect_status(&o1, SITE_ECANCELED);
    expect_status(&o2, SITE_ECANCELED);
    outcome_free(&o1);
    outcome_free(&o2);

    /* closed from inside a done callback, with another op in flight */
    s = make_site(&cfg);
    o1.close_site = s;
    assert_int_equal(start(s, url_a("/p/first"), 10000, &o1, NULL), 0);
    assert_int_equal(start(s, url_a("/silent"), 10000, &o2, NULL), 0);
    while (o1.calls + o2.calls < 2)
        uv_run(&fx->loop, UV_RUN_ONCE);
    settle();
    expect_status(&o1, SITE_OK);
    expect_status(&o2, SITE_ECANCELED);
    outcome_free(&o1);
    outcome_free(&o2);

    /* a site closed before any op: fetching is refused, done never runs */
    s = make_site(&cfg);
    site_close(s);
    assert_int_equal(site_fetch(s, url_a("/p/x"), 1000, record, &o3, NULL), SITE_ECANCELED);
    fx->site = NULL;
    settle();
    assert_int_equal(o3.calls, 0);
}

/* ---- the cache ------------------------------------------------------------------------------- */

static struct pg_pool *open_pool(const char *conninfo) {
    struct pg_pool_config pc = {.conninfo = conninfo, .size = 2, .connect_timeout_ms = 3000};
    char err[256] = "";
    struct pg_pool *p = pg_pool_new(&fx->loop, &pc, err, sizeof(err));
    if (!p)
        fail_msg("pg_pool_new: %s", err);
    return p;
}

static void skip_without_database(void) {
    if (!db_conninfo)
        skip();
}

static void test_cache_hit(void **state) {
    (void)state;
    skip_without_database();
    fx->pg = open_pool(db_conninfo);
    struct site_config cfg = local_config();
    cfg.cache_ttl_hours = 24;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/p/cached"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "fetch");
    char *first = strdup(o.text);

    /* the same page again, and a spelling with the same canonical key */
    fetch(s, url_a("/p/cached"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "cache");
    assert_string_equal(o.text, first);
    assert_string_equal(o.url, url_a("/p/cached"));
    fetch(s, url_a("/p/cached/?utm_source=x#top"), 10000, &o);
    assert_string_equal(o.source, "cache");
    assert_int_equal(hits(&fx->a, "/p/cached"), 1);
    assert_int_equal(fx->a.requests, 1);

    /* the row: key = sha256 of the canonical URL */
    char canonical[128];
    snprintf(canonical, sizeof(canonical), "https://127.0.0.1:%d/p/cached", port_a);
    const char *params[] = {canonical};
    char *row = db_query("SELECT source || ' ' || url FROM gtm_scrape_cache"
                         " WHERE key = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                         1, params);
    char want[256];
    snprintf(want, sizeof(want), "fetch %s", url_a("/p/cached"));
    assert_string_equal(row, want);
    free(row);
    row = db_query("SELECT content FROM gtm_scrape_cache WHERE key = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                   1, params);
    assert_string_equal(row, first);
    free(row);
    free(first);

    /* cancelled while the cache is read */
    struct site_op *op;
    outcome_free(&o);
    assert_int_equal(start(s, url_a("/p/cancel-in-cache"), 10000, &o, &op), 0);
    site_cancel(op);
    run_until(&o.calls, 1);
    settle();
    expect_status(&o, SITE_ECANCELED);
    assert_int_equal(hits(&fx->a, "/p/cancel-in-cache"), 0);
    outcome_free(&o);
}

static void test_cache_expiry(void **state) {
    (void)state;
    skip_without_database();
    fx->pg = open_pool(db_conninfo);
    struct site_config cfg = local_config();
    cfg.cache_ttl_hours = 24;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};

    char old_key[128], fresh_key[128], other_key[128];
    snprintf(old_key, sizeof(old_key), "https://127.0.0.1:%d/p/old", port_a);
    snprintf(fresh_key, sizeof(fresh_key), "https://127.0.0.1:%d/p/recent", port_a);
    snprintf(other_key, sizeof(other_key), "https://expired.example/%d", port_a);
    const char *insert = "INSERT INTO gtm_scrape_cache (key, url, content, source, fetched_at)"
                         " VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), $1, $2, 'fetch',"
                         " gtm_utcnow() - $3::int * interval '1 hour')";
    const char *p_old[] = {old_key, "stale content", "48"};
    const char *p_fresh[] = {fresh_key, "content from the database", "23"};
    const char *p_other[] = {other_key, "another expired row", "100"};
    free(db_query(insert, 3, p_old));
    free(db_query(insert, 3, p_fresh));
    free(db_query(insert, 3, p_other));

    /* 48 hours old with a 24 hour TTL: fetched again and rewritten */
    fetch(s, url_a("/p/old"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "fetch");
    assert_non_null(strstr(o.text, "Page old"));
    assert_int_equal(hits(&fx->a, "/p/old"), 1);
    const char *k_old[] = {old_key};
    char *age = db_query("SELECT (gtm_utcnow() - fetched_at < interval '1 minute')::text || ' ' || content"
                         " FROM gtm_scrape_cache WHERE key = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                         1, k_old);
    assert_true(strncmp(age, "true ", 5) == 0);
    assert_non_null(strstr(age, "Page old"));
    free(age);
    /* the write swept the other expired row */
    const char *k_other[] = {other_key};
    char *gone = db_query("SELECT count(*) FROM gtm_scrape_cache WHERE key = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                          1, k_other);
    assert_string_equal(gone, "0");
    free(gone);

    /* 23 hours old: still served from the cache, the page is never asked for */
    fetch(s, url_a("/p/recent"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "cache");
    assert_string_equal(o.text, "content from the database");
    assert_int_equal(hits(&fx->a, "/p/recent"), 0);
    outcome_free(&o);
}

static void test_cache_with_firecrawl(void **state) {
    (void)state;
    skip_without_database();
    fx->pg = open_pool(db_conninfo);
    fc_configure(NULL);
    struct site_config cfg = firecrawl_config(FC_KEY);
    cfg.cache_ttl_hours = 1;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    fetch(s, url_a("/p/fc-cached"), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "firecrawl");
    fetch(s, url_a("/p/fc-cached"), 10000, &o);
    assert_string_equal(o.source, "cache");
    assert_int_equal(fc_request_count(), 1);
    char canonical[128];
    snprintf(canonical, sizeof(canonical), "https://127.0.0.1:%d/p/fc-cached", port_a);
    const char *params[] = {canonical};
    char *source = db_query("SELECT source FROM gtm_scrape_cache WHERE key = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                            1, params);
    assert_string_equal(source, "firecrawl");
    free(source);
    outcome_free(&o);
}

/* No database at all: every fetch still works, nothing is cached. */
static void test_cache_database_down(void **state) {
    (void)state;
    char conninfo[256];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=nothing user=nobody connect_timeout=2",
             closed_port());
    fx->pg = open_pool(conninfo);
    struct site_config cfg = local_config();
    cfg.cache_ttl_hours = 24;
    struct site *s = make_site(&cfg);
    struct outcome o = {0};
    const char *pages[] = {"/p/no-db-0", "/p/no-db-1"};
    for (int i = 0; i < 2; i++) {
        uint64_t took = fetch(s, url_a(pages[i]), 10000, &o);
        expect_status(&o, SITE_OK);
        assert_string_equal(o.source, "fetch");
        assert_true(took < 5000);
        assert_int_equal(hits(&fx->a, pages[i]), 1);
    }
    /* the memo of recent pages answers a repeat without the database */
    uint64_t took = fetch(s, url_a(pages[0]), 10000, &o);
    expect_status(&o, SITE_OK);
    assert_string_equal(o.source, "cache");
    assert_true(took < 1000);
    assert_int_equal(hits(&fx->a, pages[0]), 1);

    /* a TTL of 0 turns the cache off: the pool is never asked */
    cfg.cache_ttl_hours = 0;
    site_close(s);
    s = make_site(&cfg);
    struct pg_pool_stats before, after;
    pg_pool_get_stats(fx->pg, &before);
    fetch(s, url_a("/p/no-db"), 10000, &o);
    expect_status(&o, SITE_OK);
    pg_pool_get_stats(fx->pg, &after);
    assert_int_equal(after.ops_done + after.ops_failed, before.ops_done + before.ops_failed);
    outcome_free(&o);
}

/* ---- main --------------------------------------------------------------------------------- */

int main(void) {
    real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    if (!real_connect) {
        fprintf(stderr, "cannot find the real connect\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *url = getenv("DATABASE_URL");
    base_conninfo = strdup(url && url[0] ? url : "");
    char why[512] = "";
    if (!db_setup(why, sizeof(why))) {
        if (getenv("CI")) {
            fprintf(stderr, "no database for the cache tests (CI is set, so this fails): %s\n", why);
            db_teardown();
            free(base_conninfo);
            return 1;
        }
        fprintf(stderr, "cache tests skipped: no database: %s\n", why);
        free(db_conninfo);
        db_conninfo = NULL;
    }
    if (!fc_start(why, sizeof(why))) {
        fprintf(stderr, "%s\n", why);
        db_teardown();
        free(base_conninfo);
        return 1;
    }

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fetch_local_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_before_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_allow_private, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_redirects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_localhost_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firecrawl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firecrawl_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firecrawl_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_with_firecrawl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_database_down, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("site", tests, NULL, NULL);
    fc_stop();
    db_teardown();
    free(base_conninfo);
    curl_global_cleanup();
    return failed;
}
