/* httpc against a tiny HTTP/1.1 server running on the same loop, on 127.0.0.1.
 *
 * Server routes:
 *   /hello          200 text/plain "hello world" with X-Custom
 *   /echo           200, echoes the request body; the request is recorded
 *   /id/N           200 "id:N"
 *   /delay/N        200 after N ms
 *   /big/N          N bytes with Content-Length
 *   /chunked/N      N bytes, chunked
 *   /gzip           "hello gzip " x 20, gzip-encoded
 *   /redirect       302 to /hello
 *   /redirect2      302 to /redirect
 *   /redirect-away  302 to /hello on another origin (localhost instead of 127.0.0.1)
 *   /redirect-ftp   302 to an ftp:// URL
 *   /silent         never answers
 *   /close          closes the connection without answering */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "fetch/httpc.h"

#define WATCHDOG_MS 30000

/* ---- in-process test server ---------------------------------------------- */

struct test_server;

struct srv_conn {
    uv_tcp_t tcp;
    uv_timer_t delay;
    struct test_server *srv;
    char *buf;
    size_t len, cap;
    int open_handles;
    bool closing;
    struct srv_conn *prev, *next;
};

struct test_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    unsigned accepted, requests;
    struct srv_conn *conns;
    int open_handles;
    /* the last request */
    char method[16];
    char path[256];
    char *headers;
    char *body;
    size_t body_len;
    void (*on_request)(struct test_server *srv, const char *path, void *arg);
    void *hook_arg;
};

struct srv_write {
    uv_write_t req;
    char data[];
};

static void srv_conn_closed(uv_handle_t *h) {
    struct srv_conn *conn = h->data;
    struct test_server *srv = conn->srv;
    if (--conn->open_handles == 0) {
        free(conn->buf);
        free(conn);
        srv->open_handles--;
    }
}

static void srv_conn_close(struct srv_conn *conn) {
    if (conn->closing)
        return;
    conn->closing = true;
    struct test_server *srv = conn->srv;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    uv_close((uv_handle_t *)&conn->tcp, srv_conn_closed);
    uv_close((uv_handle_t *)&conn->delay, srv_conn_closed);
}

static void srv_written(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static void srv_send(struct srv_conn *conn, const char *data, size_t len) {
    if (conn->closing)
        return;
    struct srv_write *w = malloc(sizeof(*w) + len);
    assert_non_null(w);
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &b, 1, srv_written) != 0) {
        free(w);
        srv_conn_close(conn);
    }
}

/* One write per response, so Nagle never waits for the client's delayed ACK. */
static void srv_respond(struct srv_conn *conn, bool head, const char *extra, const char *body,
                        size_t body_len) {
    size_t sent_body = head ? 0 : body_len;
    char *msg = malloc(512 + sent_body);
    int n = snprintf(msg, 512, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n", body_len,
                     extra ? extra : "");
    if (sent_body)
        memcpy(msg + n, body, sent_body);
    srv_send(conn, msg, (size_t)n + sent_body);
    free(msg);
}

static void srv_respond_chunked(struct srv_conn *conn, size_t total) {
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    srv_send(conn, head, sizeof(head) - 1);
    char chunk[1100];
    while (total) {
        size_t n = total < 1000 ? total : 1000;
        int h = snprintf(chunk, sizeof(chunk), "%zx\r\n", n);
        memset(chunk + h, 'c', n);
        memcpy(chunk + h + n, "\r\n", 2);
        srv_send(conn, chunk, (size_t)h + n + 2);
        total -= n;
    }
    srv_send(conn, "0\r\n\r\n", 5);
}

static void srv_delay_fired(uv_timer_t *t) {
    struct srv_conn *conn = t->data;
    srv_respond(conn, false, NULL, "delayed", 7);
}

static void srv_handle(struct srv_conn *conn, const char *method, const char *path) {
    struct test_server *srv = conn->srv;
    bool head = strcmp(method, "HEAD") == 0;
    srv->requests++;
    if (srv->on_request)
        srv->on_request(srv, path, srv->hook_arg);

    if (strcmp(path, "/hello") == 0) {
        srv_respond(conn, head, "Content-Type: text/plain; charset=utf-8\r\nX-Custom: custom value\r\n",
                    "hello world", 11);
    } else if (strcmp(path, "/echo") == 0) {
        srv_respond(conn, head, "Content-Type: application/json\r\n", srv->body, srv->body_len);
    } else if (strncmp(path, "/id/", 4) == 0) {
        char body[64];
        int n = snprintf(body, sizeof(body), "id:%s", path + 4);
        srv_respond(conn, head, NULL, body, (size_t)n);
    } else if (strncmp(path, "/delay/", 7) == 0) {
        uv_timer_start(&conn->delay, srv_delay_fired, strtoull(path + 7, NULL, 10), 0);
    } else if (strncmp(path, "/big/", 5) == 0) {
        size_t n = strtoull(path + 5, NULL, 10);
        char *body = malloc(n + 1);
        memset(body, 'b', n);
        srv_respond(conn, head, NULL, body, n);
        free(body);
    } else if (strncmp(path, "/chunked/", 9) == 0) {
        srv_respond_chunked(conn, strtoull(path + 9, NULL, 10));
    } else if (strcmp(path, "/gzip") == 0) {
        static const char gz[] = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xcb\x48\xcd\xc9\xc9\x57"
                                 "\x48\xaf\xca\x2c\x50\xc8\x18\x6e\x4c\x00\xd9\x94\xfb\xac\xdc\x00"
                                 "\x00\x00";
        srv_respond(conn, head, "Content-Encoding: gzip\r\n", gz, sizeof(gz) - 1);
    } else if (strcmp(path, "/redirect") == 0) {
        static const char moved[] =
            "HTTP/1.1 302 Found\r\nLocation: /hello\r\nContent-Length: 5\r\n\r\nmoved";
        srv_send(conn, moved, sizeof(moved) - 1);
    } else if (strcmp(path, "/redirect2") == 0) {
        static const char moved[] = "HTTP/1.1 302 Found\r\nLocation: /redirect\r\nContent-Length: 0\r\n\r\n";
        srv_send(conn, moved, sizeof(moved) - 1);
    } else if (strcmp(path, "/redirect-away") == 0 || strcmp(path, "/redirect-ftp") == 0) {
        char moved[256];
        int n = strcmp(path, "/redirect-ftp") == 0
                    ? snprintf(moved, sizeof(moved), "HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/x\r\n"
                                                     "Content-Length: 0\r\n\r\n")
                    : snprintf(moved, sizeof(moved), "HTTP/1.1 302 Found\r\nLocation: http://localhost:%d/hello\r\n"
                                                     "Content-Length: 0\r\n\r\n", srv->port);
        srv_send(conn, moved, (size_t)n);
    } else if (strcmp(path, "/silent") == 0) {
        /* keeps the connection open and never answers */
    } else if (strcmp(path, "/close") == 0) {
        srv_conn_close(conn);
    } else {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        srv_send(conn, nf, sizeof(nf) - 1);
    }
}

/* Handles every complete request in the buffer. */
static void srv_parse(struct srv_conn *conn) {
    struct test_server *srv = conn->srv;
    while (!conn->closing) {
        char *end = memmem(conn->buf, conn->len, "\r\n\r\n", 4);
        if (!end)
            return;
        size_t head_len = (size_t)(end - conn->buf) + 4;
        size_t content_length = 0;
        for (char *p = conn->buf; p < end; p++) {
            if (*p == '\n' && strncasecmp(p + 1, "Content-Length:", 15) == 0)
                content_length = strtoull(p + 16, NULL, 10);
        }
        if (conn->len < head_len + content_length)
            return;

        free(srv->headers);
        srv->headers = strndup(conn->buf, head_len);
        char method[16] = "", path[256] = "";
        sscanf(srv->headers, "%15s %255s", method, path);
        strcpy(srv->method, method);
        strcpy(srv->path, path);
        free(srv->body);
        srv->body = malloc(content_length + 1);
        memcpy(srv->body, conn->buf + head_len, content_length);
        srv->body[content_length] = '\0';
        srv->body_len = content_length;

        size_t used = head_len + content_length;
        memmove(conn->buf, conn->buf + used, conn->len - used);
        conn->len -= used;
        srv_handle(conn, method, path);
    }
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    struct srv_conn *conn = h->data;
    if (conn->cap - conn->len < suggested) {
        conn->cap = conn->len + suggested;
        conn->buf = realloc(conn->buf, conn->cap);
    }
    *buf = uv_buf_init(conn->buf + conn->len, (unsigned)(conn->cap - conn->len));
}

static void srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    struct srv_conn *conn = s->data;
    if (nread < 0) {
        srv_conn_close(conn);
        return;
    }
    conn->len += (size_t)nread;
    srv_parse(conn);
}

static void srv_accept(uv_stream_t *listener, int status) {
    struct test_server *srv = listener->data;
    assert_int_equal(status, 0);
    struct srv_conn *conn = calloc(1, sizeof(*conn));
    conn->srv = srv;
    uv_tcp_init(srv->loop, &conn->tcp);
    uv_timer_init(srv->loop, &conn->delay);
    conn->tcp.data = conn->delay.data = conn;
    conn->open_handles = 2;
    srv->open_handles++;
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&conn->tcp), 0);
    uv_tcp_nodelay(&conn->tcp, 1);
    srv->accepted++;
    uv_read_start((uv_stream_t *)&conn->tcp, srv_alloc, srv_read);
}

static void server_start(struct test_server *srv, uv_loop_t *loop) {
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
    srv->listener.data = srv;
    srv->open_handles = 1;
    assert_int_equal(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 1024, srv_accept), 0);
    int len = sizeof(addr);
    assert_int_equal(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &len), 0);
    srv->port = ntohs(addr.sin_port);
}

static void srv_listener_closed(uv_handle_t *h) {
    struct test_server *srv = h->data;
    srv->open_handles--;
}

static void server_stop(struct test_server *srv) {
    uv_close((uv_handle_t *)&srv->listener, srv_listener_closed);
    while (srv->conns)
        srv_conn_close(srv->conns);
    while (srv->open_handles)
        uv_run(srv->loop, UV_RUN_ONCE);
    free(srv->headers);
    free(srv->body);
}

/* ---- fixture ------------------------------------------------------------- */

struct fixture {
    uv_loop_t loop;
    struct test_server srv;
    struct httpc *c;
    uv_timer_t watchdog;
    bool watchdog_fired;
    bool closed;
    uv_prepare_t counter; /* test_zero_delay's, closed by teardown */
    uv_timer_t starter;
    char url[128];
};

static bool g_in_api; /* set while the test is inside an httpc_* call */

static void watchdog_fired(uv_timer_t *t) {
    struct fixture *fx = t->data;
    fx->watchdog_fired = true;
}

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    server_start(&fx->srv, &fx->loop);
    fx->c = httpc_new(&fx->loop);
    assert_non_null(fx->c);
    uv_timer_init(&fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    uv_prepare_init(&fx->loop, &fx->counter);
    uv_timer_init(&fx->loop, &fx->starter);
    *state = fx;
    return 0;
}

static void on_client_closed(void *arg) {
    struct fixture *fx = arg;
    fx->closed = true;
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    if (fx->c && !fx->closed) {
        httpc_close(fx->c, on_client_closed, fx);
        while (!fx->closed)
            uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uv_close((uv_handle_t *)&fx->counter, NULL);
    uv_close((uv_handle_t *)&fx->starter, NULL);
    server_stop(&fx->srv);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0); /* every handle was closed */
    free(fx);
    return 0;
}

/* Runs the loop until *counter reaches target (or the watchdog fires). */
static void run_until(struct fixture *fx, const int *counter, int target) {
    uv_timer_start(&fx->watchdog, watchdog_fired, WATCHDOG_MS, 0);
    while (*counter < target && !fx->watchdog_fired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->watchdog);
    assert_false(fx->watchdog_fired);
}

static const char *url(struct fixture *fx, const char *path) {
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d%s", fx->srv.port, path);
    return fx->url;
}

static struct gtm_http_call make_call(const char *method, const char *u) {
    struct gtm_http_call call = {.size = sizeof(call), .method = method, .url = u};
    return call;
}

/* What a done callback saw, copied while the result was valid. */
struct outcome {
    int calls;
    int error;
    long status;
    char *body;
    size_t body_len;
    bool body_terminated;
    char *content_type;
    char *custom, *custom_upper;
    bool missing_is_null;
    char *error_text;
    double total_ms;
    uint64_t done_ns;
    int *counter; /* incremented when not NULL */
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void record(void *arg, const struct gtm_http_result *res) {
    struct outcome *o = arg;
    assert_false(g_in_api); /* never re-entrant from httpc_start/cancel/close */
    o->calls++;
    o->error = res->error;
    o->status = res->status;
    o->body_len = res->body_len;
    o->body_terminated = res->body && res->body[res->body_len] == '\0';
    free(o->body);
    o->body = res->body ? strndup(res->body, res->body_len) : NULL;
    free(o->content_type);
    o->content_type = dup_or_null(res->content_type);
    free(o->custom);
    o->custom = dup_or_null(res->header(res, "x-custom"));
    free(o->custom_upper);
    o->custom_upper = dup_or_null(res->header(res, "X-CUSTOM"));
    o->missing_is_null = res->header(res, "X-Not-There") == NULL;
    free(o->error_text);
    o->error_text = dup_or_null(res->error_text);
    o->total_ms = res->total_ms;
    o->done_ns = uv_hrtime();
    if (o->counter)
        (*o->counter)++;
}

static void outcome_free(struct outcome *o) {
    free(o->body);
    free(o->content_type);
    free(o->custom);
    free(o->custom_upper);
    free(o->error_text);
    memset(o, 0, sizeof(*o));
}

static int start(struct fixture *fx, const struct gtm_http_call *call, struct outcome *o,
                 struct httpc_call **out) {
    g_in_api = true;
    int rc = httpc_start(fx->c, call, record, o, out);
    g_in_api = false;
    return rc;
}

/* ---- 1. GET -------------------------------------------------------------- */

static void test_get(void **state) {
    struct fixture *fx = *state;
    struct outcome o = {0};
    struct gtm_http_call call = make_call(NULL, url(fx, "/hello"));
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    assert_int_equal(httpc_active(fx->c), 1);
    run_until(fx, &o.calls, 1);

    assert_int_equal(o.calls, 1);
    assert_int_equal(o.error, 0);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body_len, 11);
    assert_string_equal(o.body, "hello world");
    assert_true(o.body_terminated);
    assert_string_equal(o.content_type, "text/plain; charset=utf-8");
    assert_string_equal(o.custom, "custom value");
    assert_string_equal(o.custom_upper, "custom value");
    assert_true(o.missing_is_null);
    assert_null(o.error_text);
    assert_true(o.total_ms > 0);
    assert_string_equal(fx->srv.method, "GET");
    assert_non_null(strcasestr(fx->srv.headers, "\r\nAccept-Encoding: "));
    assert_int_equal(httpc_active(fx->c), 0);
    outcome_free(&o);

    /* A name goes through curl's resolver (localhost never leaves the host). */
    struct outcome named = {0};
    char u[64];
    snprintf(u, sizeof(u), "http://localhost:%d/hello", fx->srv.port);
    call = make_call("GET", u);
    assert_int_equal(start(fx, &call, &named, NULL), 0);
    run_until(fx, &named.calls, 1);
    assert_int_equal(named.error, 0);
    assert_string_equal(named.body, "hello world");
    outcome_free(&named);
}

static void test_gzip_and_redirect(void **state) {
    struct fixture *fx = *state;
    char want[256] = "";
    for (int i = 0; i < 20; i++)
        strcat(want, "hello gzip ");

    struct outcome o = {0};
    struct gtm_http_call call = make_call(NULL, url(fx, "/gzip"));
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.error, 0);
    assert_string_equal(o.body, want); /* decoded */
    assert_non_null(strcasestr(fx->srv.headers, "\r\nAccept-Encoding: "));
    assert_non_null(strstr(fx->srv.headers, "gzip"));

    /* The cap applies to the decoded body, not to Content-Length. */
    struct outcome capped = {0};
    call.max_response = 100;
    assert_int_equal(start(fx, &call, &capped, NULL), 0);
    run_until(fx, &capped.calls, 1);
    assert_int_equal(capped.error, GTM_ETOOBIG);

    /* Redirects are the caller's business. */
    struct outcome r = {0};
    call = make_call(NULL, url(fx, "/redirect"));
    assert_int_equal(start(fx, &call, &r, NULL), 0);
    run_until(fx, &r.calls, 1);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.body, "moved");
    assert_int_equal(fx->srv.requests, 3);
    outcome_free(&o);
    outcome_free(&capped);
    outcome_free(&r);
}

/* ---- 2. POST and other methods ------------------------------------------ */

static void test_post_json_and_methods(void **state) {
    struct fixture *fx = *state;
    struct outcome o = {0};
    static const char json[] = "{\"name\":\"gtm\",\"list\":[1,2,3],\"s\":\"\\u00e9\"}";
    /* The caller's memory goes away right after httpc_start. */
    char body[sizeof(json)];
    memcpy(body, json, sizeof(json));
    char h1[] = "Content-Type: application/json", h2[] = "X-Request-Id: abc-123";
    const char *headers[] = {h1, h2, NULL};
    struct gtm_http_call call = make_call("POST", url(fx, "/echo"));
    call.headers = headers;
    call.body = body;
    call.body_len = strlen(json);
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    memset(body, 'X', sizeof(body));
    memset(h1, 'Y', sizeof(h1) - 1);
    memset(h2, 'Z', sizeof(h2) - 1);
    run_until(fx, &o.calls, 1);

    assert_int_equal(o.error, 0);
    assert_int_equal(o.status, 200);
    assert_string_equal(fx->srv.method, "POST");
    assert_int_equal(fx->srv.body_len, strlen(json));
    assert_memory_equal(fx->srv.body, json, strlen(json));
    assert_string_equal(o.body, json);
    assert_non_null(strstr(fx->srv.headers, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(fx->srv.headers, "\r\nX-Request-Id: abc-123\r\n"));
    assert_null(strcasestr(fx->srv.headers, "\r\nExpect:"));

    static const char *const methods[] = {"PUT", "PATCH", "DELETE", "HEAD"};
    for (size_t i = 0; i < 4; i++) {
        struct outcome m = {0};
        struct gtm_http_call mc = make_call(methods[i], url(fx, "/echo"));
        bool with_body = i < 2;
        if (with_body) {
            mc.body = json;
            mc.body_len = strlen(json);
        }
        assert_int_equal(start(fx, &mc, &m, NULL), 0);
        run_until(fx, &m.calls, 1);
        assert_int_equal(m.error, 0);
        assert_int_equal(m.status, 200);
        assert_string_equal(fx->srv.method, methods[i]);
        assert_int_equal(fx->srv.body_len, with_body ? strlen(json) : 0);
        assert_int_equal(m.body_len, with_body ? strlen(json) : 0);
        outcome_free(&m);
    }
    outcome_free(&o);
}

static void test_bad_input(void **state) {
    struct fixture *fx = *state;
    struct outcome o = {0};
    struct gtm_http_call call = make_call(NULL, NULL);
    assert_int_equal(start(fx, &call, &o, NULL), GTM_EINVAL);
    call = make_call(NULL, "ftp://127.0.0.1/x");
    assert_int_equal(start(fx, &call, &o, NULL), GTM_EINVAL);
    call = make_call("GE T", url(fx, "/hello"));
    assert_int_equal(start(fx, &call, &o, NULL), GTM_EINVAL);
    const char *smuggle[] = {"X-A: 1\r\nX-B: 2", NULL};
    call = make_call(NULL, url(fx, "/hello"));
    call.headers = smuggle;
    assert_int_equal(start(fx, &call, &o, NULL), GTM_EINVAL);
    call = make_call("POST", url(fx, "/hello"));
    call.body_len = 3;
    assert_int_equal(start(fx, &call, &o, NULL), GTM_EINVAL);
    assert_int_equal(httpc_active(fx->c), 0);

    /* The server hangs up without answering. */
    call = make_call(NULL, url(fx, "/close"));
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.error, GTM_EIO);
    assert_int_equal(o.status, 0);
    assert_non_null(o.error_text);
    outcome_free(&o);
}

/* ---- 3. concurrency ------------------------------------------------------ */

#define N_CONCURRENT 200

static void test_concurrent(void **state) {
    struct fixture *fx = *state;
    struct outcome *o = calloc(N_CONCURRENT, sizeof(*o));
    int finished = 0;
    for (int i = 0; i < N_CONCURRENT; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/id/%d", i);
        struct gtm_http_call call = make_call(NULL, url(fx, path));
        o[i].counter = &finished;
        assert_int_equal(start(fx, &call, &o[i], NULL), 0);
    }
    assert_int_equal(httpc_active(fx->c), N_CONCURRENT);
    run_until(fx, &finished, N_CONCURRENT);
    for (int i = 0; i < N_CONCURRENT; i++) {
        char want[32];
        snprintf(want, sizeof(want), "id:%d", i);
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].error, 0);
        assert_int_equal(o[i].status, 200);
        assert_string_equal(o[i].body, want);
        outcome_free(&o[i]);
    }
    assert_int_equal(fx->srv.requests, N_CONCURRENT);
    assert_int_equal(httpc_active(fx->c), 0);
    free(o);
}

/* ---- 4. timeout ---------------------------------------------------------- */

static void test_timeout(void **state) {
    struct fixture *fx = *state;
    struct outcome o = {0};
    struct gtm_http_call call = make_call(NULL, url(fx, "/silent"));
    call.timeout_ms = 300;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    run_until(fx, &o.calls, 1);
    double elapsed_ms = (double)(o.done_ns - t0) / 1e6;
    assert_int_equal(o.error, GTM_ETIMEDOUT);
    assert_int_equal(o.status, 0);
    assert_non_null(o.error_text);
    assert_true(elapsed_ms >= 295);
    assert_true(elapsed_ms < 300 + 1500); /* slack for valgrind */
    assert_int_equal(fx->srv.requests, 1);

    /* A delayed answer inside the timeout still arrives. */
    struct outcome d = {0};
    call = make_call(NULL, url(fx, "/delay/50"));
    call.timeout_ms = 5000;
    assert_int_equal(start(fx, &call, &d, NULL), 0);
    run_until(fx, &d.calls, 1);
    assert_int_equal(d.error, 0);
    assert_string_equal(d.body, "delayed");
    assert_true(d.total_ms >= 45);
    outcome_free(&d);
    outcome_free(&o);
}

/* ---- 5. refused ---------------------------------------------------------- */

static void test_refused(void **state) {
    struct fixture *fx = *state;
    /* Bound but not listening: the kernel refuses, and nobody else can take the
     * port while the test runs. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(addr.sin_port));

    struct outcome o = {0};
    struct gtm_http_call call = make_call(NULL, u);
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.error, GTM_ECONNREFUSED);
    assert_int_equal(o.status, 0);
    assert_non_null(o.error_text);
    close(fd);
    outcome_free(&o);
}

/* ---- 6. size cap --------------------------------------------------------- */

static void expect_size(struct fixture *fx, const char *path, size_t cap, int want_error) {
    struct outcome o = {0};
    struct gtm_http_call call = make_call(NULL, url(fx, path));
    call.max_response = cap;
    assert_int_equal(start(fx, &call, &o, NULL), 0);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.error, want_error);
    if (want_error) {
        assert_non_null(strstr(o.error_text, "larger than"));
        assert_int_equal(o.body_len, 0);
    } else {
        assert_int_equal(o.body_len, cap);
        assert_true(o.body_terminated);
    }
    outcome_free(&o);
}

static void test_too_big(void **state) {
    struct fixture *fx = *state;
    expect_size(fx, "/big/5000", 1000, GTM_ETOOBIG);     /* refused on Content-Length */
    expect_size(fx, "/chunked/5000", 1000, GTM_ETOOBIG); /* refused while reading */
    expect_size(fx, "/chunked/1001", 1000, GTM_ETOOBIG);
    expect_size(fx, "/big/1000", 1000, 0); /* exactly the cap is fine */
    expect_size(fx, "/chunked/1000", 1000, 0);
    expect_size(fx, "/big/200000", 200000, 0);
}

/* ---- 7. connection reuse ------------------------------------------------- */

struct chain {
    struct fixture *fx;
    int remaining, finished, failures;
    const char *path;
};

static void chain_next(void *arg, const struct gtm_http_result *res) {
    struct chain *ch = arg;
    assert_false(g_in_api);
    ch->finished++;
    if (res->error || res->status != 200)
        ch->failures++;
    if (ch->remaining > 0) {
        ch->remaining--;
        struct gtm_http_call call = make_call(NULL, url(ch->fx, ch->path));
        g_in_api = true;
        int rc = httpc_start(ch->fx->c, &call, chain_next, ch, NULL);
        g_in_api = false;
        if (rc)
            ch->failures++;
    }
}

static void test_reuse(void **state) {
    struct fixture *fx = *state;
    struct chain ch = {.fx = fx, .remaining = 19, .path = "/hello"};
    struct gtm_http_call call = make_call(NULL, url(fx, "/hello"));
    assert_int_equal(httpc_start(fx->c, &call, chain_next, &ch, NULL), 0);
    run_until(fx, &ch.finished, 20);
    assert_int_equal(ch.failures, 0);
    assert_int_equal(fx->srv.requests, 20);
    assert_int_equal(fx->srv.accepted, 1);
    struct httpc_stats st;
    httpc_get_stats(fx->c, &st);
    assert_int_equal(st.calls_started, 20);
    assert_int_equal(st.easy_created, 1); /* one easy handle, reset and reused */
}

/* ---- 8. cancel and close ------------------------------------------------- */

struct cancel_ctx {
    struct httpc_call *call;
    unsigned want_requests;
};

/* Cancels once the server holds the request, so the call is truly in flight. */
static void cancel_on_request(struct test_server *srv, const char *path, void *arg) {
    struct cancel_ctx *cc = arg;
    if (strcmp(path, "/silent") != 0 || srv->requests != cc->want_requests)
        return;
    g_in_api = true;
    httpc_cancel(cc->call);
    g_in_api = false;
}

static void test_cancel(void **state) {
    struct fixture *fx = *state;

    /* In flight: the server has the request when we cancel. */
    struct outcome o = {0};
    struct cancel_ctx cc = {.want_requests = 1};
    fx->srv.on_request = cancel_on_request;
    fx->srv.hook_arg = &cc;
    struct gtm_http_call call = make_call(NULL, url(fx, "/silent"));
    assert_int_equal(start(fx, &call, &o, &cc.call), 0);
    assert_non_null(cc.call);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.error, GTM_ECANCELED);
    assert_non_null(o.error_text);
    /* done ran once: a few more turns must not bring it back */
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(o.calls, 1);
    assert_int_equal(httpc_active(fx->c), 0);
    fx->srv.on_request = NULL;

    /* Before the loop ever ran. */
    struct outcome early = {0};
    struct httpc_call *h;
    assert_int_equal(start(fx, &call, &early, &h), 0);
    g_in_api = true;
    httpc_cancel(h);
    g_in_api = false;
    assert_int_equal(early.calls, 0);
    run_until(fx, &early.calls, 1);
    assert_int_equal(early.error, GTM_ECANCELED);

    /* The client still works afterwards. */
    struct outcome after = {0};
    call = make_call(NULL, url(fx, "/hello"));
    assert_int_equal(start(fx, &call, &after, NULL), 0);
    run_until(fx, &after.calls, 1);
    assert_int_equal(after.error, 0);
    assert_string_equal(after.body, "hello world");
    outcome_free(&o);
    outcome_free(&early);
    outcome_free(&after);
}

#define N_INFLIGHT 10

struct close_ctx {
    struct fixture *fx;
    int done_calls;
    int done_at_close; /* done count when on_closed ran */
    int cancelled;
    int start_after_close;
    int closed;
    struct close_ctx *watch; /* whose done count on_closed records; NULL = this one */
};

static void never_called(void *arg, const struct gtm_http_result *res) {
    (void)arg;
    (void)res;
    fail_msg("a call started after httpc_close ran");
}

static void close_done(void *arg, const struct gtm_http_result *res) {
    struct close_ctx *cx = arg;
    assert_false(g_in_api);
    assert_false(cx->closed);
    cx->done_calls++;
    if (res->error == GTM_ECANCELED)
        cx->cancelled++;
    struct gtm_http_call call = make_call(NULL, url(cx->fx, "/hello"));
    cx->start_after_close = httpc_start(cx->fx->c, &call, never_called, NULL, NULL);
}

static void close_finished(void *arg) {
    struct close_ctx *cx = arg;
    cx->closed = 1;
    cx->done_at_close = (cx->watch ? cx->watch : cx)->done_calls;
    cx->fx->closed = true;
}

static void on_request_close(struct test_server *srv, const char *path, void *arg) {
    struct close_ctx *cx = arg;
    (void)path;
    if (srv->requests == N_INFLIGHT) {
        g_in_api = true;
        httpc_close(cx->fx->c, close_finished, cx);
        g_in_api = false;
    }
}

static void test_close_in_flight(void **state) {
    struct fixture *fx = *state;
    struct close_ctx cx = {.fx = fx};
    fx->srv.on_request = on_request_close;
    fx->srv.hook_arg = &cx;
    for (int i = 0; i < N_INFLIGHT; i++) {
        struct gtm_http_call call = make_call(NULL, url(fx, "/silent"));
        assert_int_equal(httpc_start(fx->c, &call, close_done, &cx, NULL), 0);
    }
    run_until(fx, &cx.closed, 1);
    assert_true(cx.closed);
    assert_int_equal(cx.done_calls, N_INFLIGHT);
    assert_int_equal(cx.cancelled, N_INFLIGHT);
    assert_int_equal(cx.done_at_close, N_INFLIGHT);
    assert_int_equal(cx.start_after_close, GTM_ECANCELED);
    fx->srv.on_request = NULL;
}

static void test_close_before_loop(void **state) {
    struct fixture *fx = *state;
    struct close_ctx cx = {.fx = fx};
    for (int i = 0; i < N_INFLIGHT; i++) {
        struct gtm_http_call call = make_call(NULL, url(fx, "/silent"));
        assert_int_equal(httpc_start(fx->c, &call, close_done, &cx, NULL), 0);
    }
    g_in_api = true;
    httpc_close(fx->c, close_finished, &cx);
    g_in_api = false;
    assert_int_equal(cx.done_calls, 0);
    run_until(fx, &cx.closed, 1);
    assert_int_equal(cx.done_calls, N_INFLIGHT);
    assert_int_equal(cx.cancelled, N_INFLIGHT);
    assert_int_equal(cx.done_at_close, N_INFLIGHT);
    assert_int_equal(cx.start_after_close, GTM_ECANCELED);
}

/* One quick call finishes and its done closes the client under the others. */
static void close_from_done(void *arg, const struct gtm_http_result *res) {
    struct close_ctx *cx = arg;
    assert_int_equal(res->error, 0);
    cx->done_calls++;
    httpc_close(cx->fx->c, close_finished, cx);
}

static void test_close_from_done(void **state) {
    struct fixture *fx = *state;
    struct close_ctx others = {.fx = fx};
    struct close_ctx cx = {.fx = fx, .watch = &others};
    for (int i = 0; i < N_INFLIGHT; i++) {
        struct gtm_http_call call = make_call(NULL, url(fx, "/silent"));
        assert_int_equal(httpc_start(fx->c, &call, close_done, &others, NULL), 0);
    }
    struct gtm_http_call call = make_call(NULL, url(fx, "/delay/20"));
    assert_int_equal(httpc_start(fx->c, &call, close_from_done, &cx, NULL), 0);
    run_until(fx, &cx.closed, 1);
    assert_int_equal(cx.done_calls, 1);
    assert_int_equal(others.done_calls, N_INFLIGHT);
    assert_int_equal(others.cancelled, N_INFLIGHT);
    assert_int_equal(cx.done_at_close, N_INFLIGHT);
    assert_int_equal(others.start_after_close, GTM_ECANCELED);
}

/* ---- 9. zero-delay timers ------------------------------------------------ */

#define N_CHAINS 10
#define CHAIN_LEN 50
#define N_TIMER_STARTS 50

struct spin_ctx {
    struct fixture *fx;
    struct chain chains[N_CHAINS];
    uint64_t iterations;
    int timer_started, timer_finished;
};

static void count_iteration(uv_prepare_t *p) {
    struct spin_ctx *sc = p->data;
    sc->iterations++;
}

static void timer_done(void *arg, const struct gtm_http_result *res) {
    struct spin_ctx *sc = arg;
    if (res->error == 0 && res->status == 200)
        sc->timer_finished++;
}

/* Starts calls from inside a timer callback, where curl asks for 0 ms. */
static void start_from_timer(uv_timer_t *t) {
    struct spin_ctx *sc = t->data;
    struct gtm_http_call call = make_call(NULL, url(sc->fx, "/hello"));
    assert_int_equal(httpc_start(sc->fx->c, &call, timer_done, sc, NULL), 0);
    if (++sc->timer_started == N_TIMER_STARTS)
        uv_timer_stop(t);
}

static void test_zero_delay(void **state) {
    struct fixture *fx = *state;
    struct spin_ctx sc = {.fx = fx};
    fx->counter.data = &sc;
    uv_prepare_start(&fx->counter, count_iteration);
    fx->starter.data = &sc;
    uv_timer_start(&fx->starter, start_from_timer, 1, 1);

    int finished = 0;
    for (int i = 0; i < N_CHAINS; i++) {
        sc.chains[i] = (struct chain){.fx = fx, .remaining = CHAIN_LEN - 1, .path = "/hello"};
        struct gtm_http_call call = make_call(NULL, url(fx, "/hello"));
        assert_int_equal(httpc_start(fx->c, &call, chain_next, &sc.chains[i], NULL), 0);
    }
    uint64_t t0 = uv_hrtime();
    uv_timer_start(&fx->watchdog, watchdog_fired, WATCHDOG_MS, 0);
    while (!fx->watchdog_fired) {
        finished = sc.timer_finished;
        for (int i = 0; i < N_CHAINS; i++)
            finished += sc.chains[i].finished;
        if (finished == N_CHAINS * CHAIN_LEN + N_TIMER_STARTS)
            break;
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&fx->watchdog);
    double elapsed_ms = (double)(uv_hrtime() - t0) / 1e6;
    assert_false(fx->watchdog_fired);
    for (int i = 0; i < N_CHAINS; i++)
        assert_int_equal(sc.chains[i].failures, 0);
    assert_int_equal(sc.timer_finished, N_TIMER_STARTS);

    int calls = N_CHAINS * CHAIN_LEN + N_TIMER_STARTS;
    struct httpc_stats st;
    httpc_get_stats(fx->c, &st);
    print_message("zero-delay: %d calls, %llu loop turns, %llu zero timeouts, %.1f ms\n", calls,
                  (unsigned long long)sc.iterations, (unsigned long long)st.zero_timeouts, elapsed_ms);
    assert_true(st.zero_timeouts >= (uint64_t)calls); /* the idle path was taken */
    assert_true(sc.iterations < (uint64_t)calls * 10); /* no spinning turns */
    assert_true(st.easy_created <= N_CHAINS + N_TIMER_STARTS);

    /* Waiting on a slow answer, the loop blocks instead of turning. */
    struct outcome slow = {0};
    struct gtm_http_call call = make_call(NULL, url(fx, "/delay/200"));
    assert_int_equal(start(fx, &call, &slow, NULL), 0);
    uint64_t before = sc.iterations;
    run_until(fx, &slow.calls, 1);
    assert_int_equal(slow.error, 0);
    print_message("zero-delay: %llu loop turns during a 200 ms wait\n",
                  (unsigned long long)(sc.iterations - before));
    assert_true(sc.iterations - before < 20);
    outcome_free(&slow);

    /* Idle client: nothing may keep the loop from blocking. */
    uv_prepare_stop(&fx->counter);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_backend_timeout(&fx->loop), -1);
}

/* ---- httpc_start_opts ---------------------------------------------------- */

static int opts_start(struct fixture *fx, const struct gtm_http_call *call, const struct httpc_options *opts,
                      struct outcome *o) {
    g_in_api = true;
    int rc = httpc_start_opts(fx->c, call, opts, record, o, NULL);
    g_in_api = false;
    return rc;
}

/* The URL and redirect count, read while the result is valid. */
struct hop_outcome {
    struct outcome o;
    char url[256];
    unsigned redirects;
};

static void record_hops(void *arg, const struct gtm_http_result *res) {
    struct hop_outcome *h = arg;
    const char *u = httpc_result_url(res);
    snprintf(h->url, sizeof(h->url), "%s", u ? u : "");
    h->redirects = httpc_result_redirects(res);
    record(&h->o, res);
}

static void follow(struct fixture *fx, const char *method, const char *path, const char *const *headers,
                   unsigned max_redirects, struct hop_outcome *h) {
    outcome_free(&h->o);
    struct gtm_http_call call = make_call(method, url(fx, path));
    call.headers = headers;
    struct httpc_options opts = {.max_redirects = max_redirects, .user_agent = "test-agent/1"};
    g_in_api = true;
    assert_int_equal(httpc_start_opts(fx->c, &call, &opts, record_hops, h, NULL), 0);
    g_in_api = false;
    run_until(fx, &h->o.calls, 1);
}

static void test_opts_redirects(void **state) {
    struct fixture *fx = *state;
    struct hop_outcome h = {0};
    struct httpc_stats before, after;
    httpc_get_stats(fx->c, &before);

    follow(fx, NULL, "/redirect2", NULL, 2, &h);
    assert_int_equal(h.o.error, 0);
    assert_int_equal(h.o.status, 200);
    assert_string_equal(h.o.body, "hello world");
    assert_string_equal(h.o.custom, "custom value"); /* the last hop's headers */
    assert_int_equal(h.redirects, 2);
    assert_string_equal(h.url, url(fx, "/hello"));
    assert_non_null(strstr(fx->srv.headers, "\r\nUser-Agent: test-agent/1\r\n"));
    httpc_get_stats(fx->c, &after);
    assert_int_equal(after.redirects - before.redirects, 2);

    follow(fx, NULL, "/redirect2", NULL, 1, &h);
    assert_int_equal(h.o.error, HTTPC_EREDIRECTS);
    assert_string_equal(h.o.error_text, "more than 1 redirects");

    follow(fx, NULL, "/redirect", NULL, 0, &h); /* 0: the 3xx is the answer */
    assert_int_equal(h.o.error, 0);
    assert_int_equal(h.o.status, 302);
    assert_string_equal(h.o.body, "moved");
    assert_int_equal(h.redirects, 0);

    follow(fx, "POST", "/redirect", NULL, 3, &h); /* only GET and HEAD follow */
    assert_int_equal(h.o.status, 302);

    follow(fx, "HEAD", "/redirect", NULL, 3, &h);
    assert_int_equal(h.o.status, 200);
    assert_int_equal(h.o.body_len, 0);

    follow(fx, NULL, "/redirect-ftp", NULL, 3, &h);
    assert_int_equal(h.o.error, GTM_EINVAL);

    /* credentials stay on the origin that was given them */
    const char *const headers[] = {"Authorization: Bearer secret", "Cookie: a=b", "X-Keep: yes", NULL};
    follow(fx, NULL, "/redirect", headers, 3, &h);
    assert_int_equal(h.o.status, 200);
    assert_non_null(strstr(fx->srv.headers, "Authorization: Bearer secret"));
    assert_non_null(strstr(fx->srv.headers, "Cookie: a=b"));
    follow(fx, NULL, "/redirect-away", headers, 3, &h);
    assert_int_equal(h.o.status, 200);
    assert_string_equal(h.o.body, "hello world");
    assert_null(strcasestr(fx->srv.headers, "Authorization"));
    assert_null(strcasestr(fx->srv.headers, "Cookie"));
    assert_non_null(strstr(fx->srv.headers, "X-Keep: yes"));
    outcome_free(&h.o);
}

struct check_log {
    int allow;
    unsigned calls;
    unsigned last_port;
};

static int check_address(void *arg, const struct sockaddr *sa) {
    struct check_log *log = arg;
    log->calls++;
    if (sa->sa_family == AF_INET)
        log->last_port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return log->allow;
}

static void test_opts_address_check(void **state) {
    struct fixture *fx = *state;
    struct outcome o = {0};
    struct check_log log = {.allow = 0};
    struct httpc_options opts = {.address_allowed = check_address, .address_arg = &log};
    struct gtm_http_call call = make_call(NULL, url(fx, "/hello"));
    struct httpc_stats before, after;

    /* refused: no socket is opened, the server never hears of it */
    httpc_get_stats(fx->c, &before);
    assert_int_equal(opts_start(fx, &call, &opts, &o), 0);
    run_until(fx, &o.calls, 1);
    httpc_get_stats(fx->c, &after);
    assert_int_equal(o.error, HTTPC_EBLOCKED);
    char where[64];
    snprintf(where, sizeof(where), "127.0.0.1:%d", fx->srv.port);
    assert_non_null(strstr(o.error_text, where));
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.last_port, fx->srv.port);
    assert_int_equal(after.addresses_refused - before.addresses_refused, 1);
    assert_int_equal(after.sockets_watched, before.sockets_watched);
    assert_int_equal(fx->srv.accepted, 0);

    /* a pooled connection, opened without the check, is not reused by a checked call */
    struct outcome plain = {0};
    assert_int_equal(start(fx, &call, &plain, NULL), 0);
    run_until(fx, &plain.calls, 1);
    assert_int_equal(plain.status, 200);
    assert_int_equal(fx->srv.accepted, 1);
    outcome_free(&o);
    assert_int_equal(opts_start(fx, &call, &opts, &o), 0);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.error, HTTPC_EBLOCKED);

    /* allowed: a fresh connection of its own, left for no one */
    log.allow = 1;
    outcome_free(&o);
    assert_int_equal(opts_start(fx, &call, &opts, &o), 0);
    run_until(fx, &o.calls, 1);
    assert_int_equal(o.error, 0);
    assert_string_equal(o.body, "hello world");
    assert_int_equal(fx->srv.accepted, 2);
    outcome_free(&plain);
    assert_int_equal(start(fx, &call, &plain, NULL), 0);
    run_until(fx, &plain.calls, 1);
    assert_int_equal(plain.status, 200);
    assert_int_equal(fx->srv.accepted, 2); /* the pooled one, not the checked one */
    outcome_free(&o);
    outcome_free(&plain);
}

int main(void) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_and_redirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_json_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_before_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opts_redirects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opts_address_check, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
