#include "http/conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gtm/module.h"
#include "http/request.h"
#include "http/response.h"
#include "log.h"
#include "server.h"
#include "tls/tls.h"

#define CONN_IN_CAP (64 * 1024)        /* unparsed input held while answering */
#define CONN_WRITE_CAP (64 * 1024)     /* unsent output before we stop reading */
/* Output the kernel keeps unsent per connection (TCP_NOTSENT_LOWAT).  Without
 * it the send buffer grows to tcp_wmem's maximum (4 MiB) for a client that
 * does not read, and every request it keeps sending is read and answered into
 * that buffer, each pushing the idle deadline back.  With it, such a client
 * soon fills CONN_WRITE_CAP, is no longer read, and is closed at the idle
 * timeout. */
#define CONN_NOTSENT_LOWAT (128 * 1024)
#define CONN_LINGER_MS 2000
#define BUSY_BODY_LEN 46

static const llhttp_settings_t *parser_settings(void);
static void conn_drive(struct conn *c);
static void conn_start_close(struct conn *c);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_on_timer(uv_timer_t *t);
static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

static void timer_arm(struct conn *c, double seconds)
{
    uint64_t ms = (uint64_t)(seconds * 1000.0);
    uv_timer_start(&c->timer, conn_on_timer, ms ? ms : 1, 0);
}

static void conn_set_phase(struct conn *c, uint8_t phase)
{
    const struct config *cfg = c->srv->cfg;
    c->phase = phase;
    switch (phase) {
    case PHASE_FIRST: timer_arm(c, cfg->header_timeout); break;
    case PHASE_IDLE: timer_arm(c, cfg->idle_timeout); break;
    case PHASE_HEADERS: timer_arm(c, cfg->header_timeout); break;
    case PHASE_BODY: timer_arm(c, cfg->body_timeout); break;
    case PHASE_LINGER: uv_timer_start(&c->timer, conn_on_timer, CONN_LINGER_MS, 0); break;
    default: uv_timer_stop(&c->timer); break;
    }
}

static void conn_read_start(struct conn *c)
{
    if (!c->reading && c->phase != PHASE_CLOSED && !c->peer_eof) {
        if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read) == 0) {
            c->reading = true;
        }
    }
}

static void conn_read_stop(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0) {
        return;
    }
    struct server *srv = c->srv;
    buf_free(&c->in);
    if (c->tls) {
        tls_session_free(c->tls);
    }
    free(c);
    server_conn_gone(srv);
}

static void conn_close_now(struct conn *c)
{
    if (c->phase == PHASE_CLOSED) {
        return;
    }
    c->phase = PHASE_CLOSED;
    c->reading = false;
    if (c->req) {
        struct gtm_req *r = c->req;
        c->req = NULL;
        request_detach(r);
        request_unref(r);
    }
    struct server *srv = c->srv;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
}

void conn_abort(struct conn *c)
{
    conn_close_now(c);
}

static void conn_on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    switch (c->phase) {
    case PHASE_HEADERS:
    case PHASE_BODY:
        response_send_standalone(c, c->req, 408, "Request timeout");
        break;
    case PHASE_BUSY:
        break;
    default:
        conn_close_now(c);
    }
}

/* --- writing --- */

struct write_req {
    uv_write_t req;
    struct conn *conn;
    size_t len;
    char data[];
};

static void conn_on_write(uv_write_t *w, int status)
{
    struct write_req *wr = (struct write_req *)w;
    struct conn *c = wr->conn;
    c->write_pending -= wr->len;
    free(wr);
    if (c->phase == PHASE_CLOSED) {
        return;
    }
    if (status < 0) {
        conn_close_now(c);
        return;
    }
    if (c->write_pending == 0 && c->want_close && !c->req) {
        conn_start_close(c);
        return;
    }
    if (c->write_pending < CONN_WRITE_CAP) {
        conn_drive(c);
    }
}

static void conn_write_raw(struct conn *c, const char *data, size_t len)
{
    if (c->phase == PHASE_CLOSED || len == 0) {
        return;
    }
    if (c->write_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            conn_close_now(c);
            return;
        }
        if (len == 0) {
            return;
        }
    }
    struct write_req *wr = malloc(sizeof *wr + len);
    if (!wr) {
        conn_close_now(c);
        return;
    }
    wr->conn = c;
    wr->len = len;
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write) < 0) {
        free(wr);
        conn_close_now(c);
        return;
    }
    c->write_pending += len;
}

static void conn_flush_tls(struct conn *c)
{
    const char *data;
    size_t n;
    while ((n = tls_session_out(c->tls, &data)) > 0) {
        conn_write_raw(c, data, n);
        if (c->phase == PHASE_CLOSED) {
            return;
        }
        tls_session_out_consumed(c->tls, n);
    }
}

void conn_send(struct conn *c, const char *data, size_t len)
{
    if (c->phase == PHASE_CLOSED) {
        return;
    }
    if (c->tls) {
        if (tls_session_write(c->tls, data, len) != TLS_OK) {
            conn_close_now(c);
            return;
        }
        conn_flush_tls(c);
    } else {
        conn_write_raw(c, data, len);
    }
}

/* --- closing --- */

static void conn_on_shutdown(uv_shutdown_t *sreq, int status)
{
    (void)status;
    free(sreq);
}

/* Half-close and discard input for a moment, so the client reads our last
 * answer instead of a reset caused by input we never read. */
static void conn_start_close(struct conn *c)
{
    if (c->phase == PHASE_CLOSED || c->phase == PHASE_LINGER) {
        return;
    }
    if (c->tls) {
        tls_session_close_notify(c->tls);
        conn_flush_tls(c);
        if (c->phase == PHASE_CLOSED) {
            return;
        }
    }
    if (c->peer_eof) {
        if (c->write_pending == 0) {
            conn_close_now(c);
        } else {
            c->want_close = true;
        }
        return;
    }
    uv_shutdown_t *sreq = malloc(sizeof *sreq);
    if (!sreq || uv_shutdown(sreq, (uv_stream_t *)&c->tcp, conn_on_shutdown) < 0) {
        free(sreq);
        conn_close_now(c);
        return;
    }
    buf_reset(&c->in);
    conn_set_phase(c, PHASE_LINGER);
    conn_read_start(c);
}

void conn_drain(struct conn *c)
{
    c->want_close = true;
    if (c->phase == PHASE_FIRST || c->phase == PHASE_IDLE) {
        conn_close_now(c);
    }
}

/* --- reading and parsing --- */

static void conn_fail_parse(struct conn *c)
{
    int status = 400;
    const char *detail = "Invalid HTTP request";
    if (c->req && c->req->parse_error) {
        status = c->req->parse_error;
        detail = status == 431 ? "Request header fields too large"
                 : status == 413 ? "Request body too large"
                                 : "Invalid HTTP request";
    }
    response_send_standalone(c, c->req, status, detail);
}

void conn_request_done(struct conn *c, struct gtm_req *r)
{
    if (c->req != r) {
        return;
    }
    c->req = NULL;
    request_unref(r);
    if (c->want_close || !r->keep_alive || r->close_after) {
        c->want_close = true;
        if (c->write_pending == 0) {
            conn_start_close(c);
        }
        return;
    }
    llhttp_resume(&c->parser);
    conn_set_phase(c, PHASE_IDLE);
    conn_drive(c);
}

/* Parses buffered input one request at a time.  Answers that are made at
 * once re-enter through conn_request_done; the flags turn that recursion into
 * this loop, so thousands of pipelined requests use no stack. */
static void conn_drive(struct conn *c)
{
    if (c->driving) {
        c->redrive = true;
        return;
    }
    c->driving = true;
    do {
        c->redrive = false;
        while (c->phase != PHASE_CLOSED && c->phase != PHASE_LINGER && c->phase != PHASE_BUSY &&
               !c->want_close && buf_pending(&c->in) > 0 && c->write_pending < CONN_WRITE_CAP) {
            const char *p = buf_head(&c->in);
            size_t n = buf_pending(&c->in);
            llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
            if (err == HPE_OK) {
                buf_consume(&c->in, n);
                continue;
            }
            if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
                const char *pos = llhttp_get_error_pos(&c->parser);
                size_t used = pos && pos >= p && pos <= p + n ? (size_t)(pos - p) : n;
                buf_consume(&c->in, used);
                if (err == HPE_PAUSED_UPGRADE) {
                    c->req->close_after = true;
                }
                request_dispatch(c->req);
                continue;
            }
            conn_fail_parse(c);
            break;
        }
    } while (c->redrive && c->phase != PHASE_CLOSED);
    c->driving = false;
    if (c->phase == PHASE_CLOSED) {
        return;
    }
    if (c->peer_eof && !c->req && buf_pending(&c->in) == 0 && c->phase != PHASE_LINGER) {
        if (c->write_pending == 0) {
            conn_close_now(c);
        } else {
            c->want_close = true;
        }
        return;
    }
    if (buf_pending(&c->in) < CONN_IN_CAP && c->write_pending < CONN_WRITE_CAP) {
        conn_read_start(c);
    } else {
        conn_read_stop(c);
    }
    if (buf_pending(&c->in) == 0 && c->in.cap > 16384) {
        buf_free(&c->in);
    }
}

static void conn_on_plain(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    if (c->phase == PHASE_LINGER || c->phase == PHASE_CLOSED) {
        return;
    }
    if (buf_append(&c->in, data, len) < 0) {
        conn_close_now(c);
    }
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct conn *c = h->data;
    b->base = c->srv->read_buf;
    b->len = sizeof c->srv->read_buf;
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        conn_read_stop(c);
        /* Between requests, a client that half-closes still gets what is
         * queued for it (conn_drive closes once it is written). */
        if (nread != UV_EOF || c->phase == PHASE_LINGER || c->phase == PHASE_FIRST ||
            (c->phase == PHASE_IDLE && c->write_pending == 0)) {
            conn_close_now(c);
            return;
        }
        /* A client that hangs up on a generation will not read its answer:
         * leaving frees the run for cancellation.  Anything else is answered
         * (half-close), then the connection closes. */
        if (c->req && c->req->gen_waiter) {
            conn_close_now(c);
            return;
        }
        c->peer_eof = true;
        if (c->phase == PHASE_HEADERS || c->phase == PHASE_BODY) {
            if (llhttp_finish(&c->parser) != HPE_OK || c->phase != PHASE_BUSY) {
                if (c->write_pending == 0) {
                    conn_close_now(c);
                    return;
                }
                /* a request cut short is not answered, but the answers to the
                 * ones before it are delivered, then the connection closes */
                struct gtm_req *r = c->req;
                c->req = NULL;
                if (r) {
                    request_detach(r);
                    request_unref(r);
                }
                c->want_close = true;
                conn_set_phase(c, PHASE_IDLE);
                return;
            }
        }
        conn_drive(c);
        return;
    }
    if (c->phase == PHASE_LINGER) {
        return;
    }
    if (c->tls) {
        if (tls_session_feed(c->tls, b->base, (size_t)nread) != TLS_OK) {
            conn_close_now(c);
            return;
        }
        int rc = tls_session_read(c->tls, conn_on_plain, c);
        if (c->phase == PHASE_CLOSED) {
            return;
        }
        conn_flush_tls(c);
        if (c->phase == PHASE_CLOSED) {
            return;
        }
        if (rc == TLS_ERROR) {
            log_msg(LOG_DEBUG, NULL, NULL, "tls from %s: %s", c->peer, tls_session_error(c->tls));
            conn_close_now(c);
            return;
        }
        if (rc == TLS_CLOSED) {
            c->peer_eof = true;
        }
    } else {
        conn_on_plain(c, b->base, (size_t)nread);
        if (c->phase == PHASE_CLOSED) {
            return;
        }
    }
    if (c->phase == PHASE_FIRST && buf_pending(&c->in) > 0) {
        conn_set_phase(c, PHASE_HEADERS);
    }
    conn_drive(c);
}

/* --- llhttp callbacks --- */

static int tok_append(struct gtm_req *r, const char *at, size_t len)
{
    r->hraw += len;
    if (r->hraw > REQ_HEADER_LIMIT || r->hlen + len + 1 >= sizeof r->hbuf) {
        r->parse_error = 431;
        return HPE_USER;
    }
    memcpy(r->hbuf + r->hlen, at, len);
    r->hlen += len;
    return 0;
}

static const char *tok_end(struct gtm_req *r)
{
    const char *start = r->hbuf + r->tok_start;
    r->hbuf[r->hlen++] = '\0';
    r->tok_start = r->hlen;
    return start;
}

static int on_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    if (!c->req) {
        c->req = request_new(c->srv, c);
        if (!c->req) {
            return HPE_USER;
        }
    }
    if (c->phase != PHASE_HEADERS) {
        conn_set_phase(c, PHASE_HEADERS);
    }
    return 0;
}

/* URL, header names and header values all accumulate the same way. */
static int on_token(llhttp_t *p, const char *at, size_t len)
{
    return tok_append(((struct conn *)p->data)->req, at, len);
}

static int on_url_complete(llhttp_t *p)
{
    struct gtm_req *r = ((struct conn *)p->data)->req;
    r->url = tok_end(r);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct gtm_req *r = ((struct conn *)p->data)->req;
    r->cur_name = tok_end(r);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct gtm_req *r = ((struct conn *)p->data)->req;
    const char *value = tok_end(r);
    if (r->n_headers == REQ_MAX_HEADERS) {
        r->parse_error = 431;
        return HPE_USER;
    }
    r->headers[r->n_headers].name = r->cur_name;
    r->headers[r->n_headers].value = value;
    r->n_headers++;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct gtm_req *r = c->req;
    const struct config *cfg = c->srv->cfg;
    r->method_name = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->method = router_method_bit(r->method_name);
    r->http_minor = llhttp_get_http_minor(p);
    r->keep_alive = llhttp_should_keep_alive(p);
    /* No protocol is ever switched to, and llhttp parses nothing after an
     * Upgrade (or CONNECT) request: it is answered, then the connection
     * closes.  (Kept open, the next bytes met a parser paused for the
     * upgrade and no request to hang them on.) */
    if (p->upgrade) {
        r->close_after = true;
    }
    r->chunked = (p->flags & F_CHUNKED) != 0;
    bool has_body = r->chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->max_body) {
        r->parse_error = 413;
        return -1;
    }
    const char *expect = request_header(r, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && r->http_minor >= 1 && has_body) {
        r->expect_continue = true;
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_send(c, cont, sizeof cont - 1);
    }
    if (has_body) {
        conn_set_phase(c, PHASE_BODY);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct gtm_req *r = c->req;
    if (r->body.len + len > c->srv->cfg->max_body) {
        r->parse_error = 413;
        return HPE_USER;
    }
    if (buf_append(&r->body, at, len) < 0) {
        r->parse_error = 413;
        return HPE_USER;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    conn_set_phase(c, PHASE_BUSY);
    return HPE_PAUSED;
}

static const llhttp_settings_t *parser_settings(void)
{
    static llhttp_settings_t s;
    static bool ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_message_begin = on_message_begin;
        s.on_url = on_token;
        s.on_url_complete = on_url_complete;
        s.on_header_field = on_token;
        s.on_header_field_complete = on_header_field_complete;
        s.on_header_value = on_token;
        s.on_header_value_complete = on_header_value_complete;
        s.on_headers_complete = on_headers_complete;
        s.on_body = on_body;
        s.on_message_complete = on_message_complete;
        ready = true;
    }
    return &s;
}

/* --- accepting --- */

static void refused_on_close(uv_handle_t *h)
{
    free(h);
}

static void refuse_politely(struct server *srv, uv_stream_t *server_stream)
{
#define BUSY_BODY "{\"detail\":\"Server is at its connection limit\"}"
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n"
        "content-length: " GTM_STR(BUSY_BODY_LEN) "\r\n\r\n" BUSY_BODY;
    _Static_assert(sizeof BUSY_BODY - 1 == BUSY_BODY_LEN, "BUSY_BODY_LEN is the body's length");
#undef BUSY_BODY
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) {
        return;
    }
    uv_tcp_init(srv->loop, t);
    if (uv_accept(server_stream, (uv_stream_t *)t) == 0) {
        uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
        uv_try_write((uv_stream_t *)t, &b, 1);
    }
    srv->refused_conns++;
    uv_close((uv_handle_t *)t, refused_on_close);
}

static void peer_name(uv_tcp_t *t, char *out, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    out[0] = '\0';
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &n) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, out, len);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, out, len);
        }
    }
}

void conn_accept(struct listener *l)
{
    struct server *srv = l->srv;
    if (srv->n_conns >= srv->cfg->max_connections || srv->draining) {
        refuse_politely(srv, (uv_stream_t *)&l->tcp);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        refuse_politely(srv, (uv_stream_t *)&l->tcp);
        return;
    }
    c->srv = srv;
    c->admin = l->admin;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    /* from here on the handles own c: it is freed after both close */
    c->next = srv->conns;
    if (srv->conns) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    srv->n_conns++;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) < 0) {
        conn_close_now(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        int lowat = CONN_NOTSENT_LOWAT;
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    }
    peer_name(&c->tcp, c->peer, sizeof c->peer);
    if (l->tls) {
        c->tls = tls_session_new(l->tls);
        if (!c->tls) {
            conn_close_now(c);
            return;
        }
    }
    llhttp_init(&c->parser, HTTP_REQUEST, parser_settings());
    c->parser.data = c;
    conn_set_phase(c, PHASE_FIRST);
    conn_read_start(c);
}
