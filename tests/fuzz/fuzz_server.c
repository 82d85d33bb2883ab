/* The in-process gtmd worker the HTTP fuzz targets talk to (fuzz_server.h). */
#include "fuzz_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "server.h"

#ifndef FUZZ_SOURCE_ROOT
#error "FUZZ_SOURCE_ROOT must name the source tree"
#endif

static uv_loop_t loop;
static struct server srv;
static struct config cfg;
static struct sockaddr_storage plain_addr, admin_addr;
static bool started;

/* ---- keeping the run off the network --------------------------------------
 * A generation reads the website its body names: the SSRF guard and the
 * fetcher run for real, but no name reaches DNS and no connection leaves
 * loopback, whatever the input says. */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return sa->sa_family == AF_UNIX;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) {
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    }
    if (sa && !is_loopback(sa)) {
        errno = ENETUNREACH;
        return -1;
    }
    return real_connect(fd, sa, len);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real_gai)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real_gai) {
        real_gai = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(
            RTLD_NEXT, "getaddrinfo");
    }
    struct addrinfo h;
    if (hints) {
        h = *hints;
    } else {
        memset(&h, 0, sizeof h);
        h.ai_family = AF_UNSPEC;
    }
    h.ai_flags |= AI_NUMERICHOST;
    return real_gai(node, service, &h, res);
}

/* ---- the server ----------------------------------------------------------- */

static void listener_addr(uv_tcp_t *t, struct sockaddr_storage *out)
{
    int n = sizeof *out;
    if (uv_tcp_getsockname(t, (struct sockaddr *)out, &n) != 0) {
        fprintf(stderr, "fuzz: cannot read a listener's address\n");
        exit(1);
    }
}

void fuzz_server_start(const char *module_dir, const struct fuzz_env *extra)
{
    if (started) {
        return;
    }
    /* Nothing from the caller's environment: no database, no providers, no
     * Stack Auth, no overrides. */
    static const char *const drop[] = {
        "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "GEMINI_API_KEY", "GEMINI_BASE_URL", "GEMINI_MODEL",
        "LLM_PROVIDERS", "STACK_PROJECT_ID", "STACK_JWKS_URL", "STACK_ISSUER", "FIRECRAWL_API_KEY",
        "FIRECRAWL_BASE_URL", "CORS_ORIGINS", "ENVIRONMENT", "MAX_CONTENT_LENGTH", "WEB_CACHE_TTL_HOURS",
    };
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        unsetenv(drop[i]);
    }
    extern char **environ;
    for (bool again = true; again;) {
        again = false;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "GTM_", 4) == 0) {
                char name[128];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                unsetenv(name);
                again = true;
                break;
            }
        }
    }
    setenv("GTM_LISTEN", "127.0.0.1:0", 1);
    setenv("GTM_ADMIN_LISTEN", "127.0.0.1:0", 1);
    setenv("GTM_WORKERS", "1", 1);
    setenv("GTM_LOG_LEVEL", "error", 1);
    setenv("GTM_MODULE_DIR", module_dir, 1);
    setenv("GTM_PROMPT_DIR", FUZZ_SOURCE_ROOT "/prompts", 1);
    setenv("GTM_SQL_DIR", FUZZ_SOURCE_ROOT "/sql", 1);
    /* Far beyond libFuzzer's -timeout: a connection that never ends is a
     * reported hang, not a 408. */
    setenv("GTM_HEADER_TIMEOUT", "600", 1);
    setenv("GTM_BODY_TIMEOUT", "600", 1);
    setenv("GTM_IDLE_TIMEOUT", "600", 1);
    for (const struct fuzz_env *e = extra; e && e->name; e++) {
        setenv(e->name, e->value, 1);
    }
    char err[512];
    if (config_load(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        exit(1);
    }
    log_set_level(cfg.log_level);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fuzz: libcurl failed to initialise\n");
        exit(1);
    }
    uv_loop_init(&loop);
    /* server_init takes SIGINT and SIGTERM for its graceful shutdown:
     * libFuzzer's own handlers (which stop the run and print its final
     * statistics) are put back.  SIGHUP stays the server's: POST
     * /admin/reload sends it, and the modules are reloaded as in service. */
    static const int sigs[] = {SIGINT, SIGTERM};
    struct sigaction old[2];
    for (int i = 0; i < 2; i++) {
        sigaction(sigs[i], NULL, &old[i]);
    }
    if (server_init(&srv, &loop, &cfg) < 0) {
        fprintf(stderr, "fuzz: the server refused to start\n");
        exit(1);
    }
    uv_signal_stop(&srv.sigint);
    uv_signal_stop(&srv.sigterm);
    for (int i = 0; i < 2; i++) {
        sigaction(sigs[i], &old[i], NULL);
    }
    listener_addr(&srv.plain.tcp, &plain_addr);
    listener_addr(&srv.admin.tcp, &admin_addr);
    started = true;
}

unsigned fuzz_server_conns(void)
{
    return srv.n_conns;
}

/* ---- one exchange --------------------------------------------------------- */

static void reply_append(struct fuzz_reply *out, const char *p, size_t n)
{
    out->total += n;
    if (out->len < FUZZ_REPLY_CAP) {
        size_t take = n < FUZZ_REPLY_CAP - out->len ? n : FUZZ_REPLY_CAP - out->len;
        memcpy(out->data + out->len, p, take);
        out->len += take;
    }
}

void fuzz_exchange(const void *data, size_t len, const struct fuzz_send *how, struct fuzz_reply *out)
{
    if (!out->data && !(out->data = malloc(FUZZ_REPLY_CAP))) {
        abort();
    }
    out->len = out->total = out->unsent = 0;
    out->eof = out->reset = false;

    const struct sockaddr_storage *to = how->admin ? &admin_addr : &plain_addr;
    int fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("fuzz: socket");
        abort();
    }
    /* The kernel completes a loopback handshake by itself (the server
     * accepts when its loop next runs).  Non-blocking, because libFuzzer's
     * SIGALRM (its -timeout watch) interrupts blocking calls. */
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            perror("fuzz: connect");
            abort();
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        for (;;) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, -1) == 1) {
                break;
            }
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            fprintf(stderr, "fuzz: connect: %s\n", strerror(soerr));
            abort();
        }
    }
    const char *p = data;
    size_t sent = 0;
    bool shut = false, write_dead = false;
    for (;;) {
        bool progress = false;
        uv_run(&loop, UV_RUN_NOWAIT);
        if (!write_dead && sent < len) {
            size_t n = len - sent;
            if (how->chunk && n > how->chunk) {
                n = how->chunk;
            }
            ssize_t w = send(fd, p + sent, n, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                progress = true;
                if (how->chunk) {
                    uv_run(&loop, UV_RUN_NOWAIT);   /* the server reads this piece alone */
                }
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                write_dead = true;   /* the server closed: read what it said */
            }
        }
        if (how->half_close && !shut && (sent == len || write_dead)) {
            shutdown(fd, SHUT_WR);
            shut = true;
            progress = true;
        }
        for (;;) {
            char tmp[65536];
            ssize_t r = recv(fd, tmp, sizeof tmp, 0);
            if (r > 0) {
                reply_append(out, tmp, (size_t)r);
                progress = true;
                continue;
            }
            if (r == 0) {
                out->eof = true;
                goto done;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == ECONNRESET) {
                out->reset = true;
                goto done;
            }
            perror("fuzz: recv");
            abort();
        }
        if (!progress) {
            struct pollfd pf[2] = {
                {.fd = uv_backend_fd(&loop), .events = POLLIN},
                {.fd = fd, .events = (short)(POLLIN | (!write_dead && sent < len ? POLLOUT : 0))},
            };
            poll(pf, 2, uv_backend_timeout(&loop));
        }
    }
done:
    out->unsent = len - sent;
    /* An abortive close once the server has finished: no TIME_WAIT is left
     * behind, so millions of exchanges never run out of ports. */
    {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
    while (srv.n_conns > 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    /* FUZZ_SHOW=1: print each exchange, for looking at a corpus by hand */
    static int show = -1;
    if (show < 0) {
        show = getenv("FUZZ_SHOW") && strcmp(getenv("FUZZ_SHOW"), "1") == 0;
    }
    if (show) {
        fprintf(stderr, "==fuzz== sent %zu bytes (%zu unsent), got %zu%s%s:\n%.*s\n", len, out->unsent, out->total,
                out->eof ? ", then FIN" : "", out->reset ? ", then RST" : "", (int)(out->len > 4000 ? 4000 : out->len),
                out->data);
    }
}

/* ---- parsing what went each way ------------------------------------------- */

static int rq_begin(llhttp_t *p)
{
    struct fuzz_requests *r = p->data;
    if (r->begun < FUZZ_MAX_MSGS) {
        r->method[r->begun] = -1;
    }
    r->begun++;
    return 0;
}

static int rq_headers(llhttp_t *p)
{
    struct fuzz_requests *r = p->data;
    if (r->begun && r->begun <= FUZZ_MAX_MSGS) {
        r->method[r->begun - 1] = (int)llhttp_get_method(p);
    }
    return 0;
}

void fuzz_parse_requests(const void *data, size_t len, struct fuzz_requests *out)
{
    static llhttp_settings_t s;
    static bool ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_message_begin = rq_begin;
        s.on_headers_complete = rq_headers;
        ready = true;
    }
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    out->begun = 0;
    p.data = out;
    llhttp_execute(&p, data, len);   /* stops at an error or an upgrade, as the server does */
}

struct resp_state {
    const struct fuzz_requests *reqs;
    struct fuzz_responses *out;
    const char *base;
    size_t len;
    size_t hdr_end;              /* just past the current message's header block */
    bool finishing;
    bool after_close;            /* a final response said connection: close */
    struct fuzz_response cur;
    char field[32];
    size_t flen;
    char value[64];
    size_t vlen;
    size_t body_cap;
};

static int rs_begin(llhttp_t *p)
{
    struct resp_state *st = p->data;
    if (st->after_close) {
        snprintf(st->out->why, sizeof st->out->why, "a response follows one that said connection: close");
        return HPE_USER;
    }
    memset(&st->cur, 0, sizeof st->cur);
    st->flen = st->vlen = 0;
    return 0;
}

static void keep(char *dst, size_t cap, size_t *n, const char *at, size_t len)
{
    size_t take = len < cap - 1 - *n ? len : cap - 1 - *n;
    memcpy(dst + *n, at, take);
    *n += take;
    dst[*n] = '\0';
}

static int rs_field(llhttp_t *p, const char *at, size_t len)
{
    struct resp_state *st = p->data;
    keep(st->field, sizeof st->field, &st->flen, at, len);
    return 0;
}

static int rs_value(llhttp_t *p, const char *at, size_t len)
{
    struct resp_state *st = p->data;
    keep(st->value, sizeof st->value, &st->vlen, at, len);
    return 0;
}

static int rs_value_done(llhttp_t *p)
{
    struct resp_state *st = p->data;
    if (strcasecmp(st->field, "x-request-id") == 0 && st->vlen > 0) {
        st->cur.has_request_id = true;
    } else if (strcasecmp(st->field, "content-type") == 0) {
        snprintf(st->cur.content_type, sizeof st->cur.content_type, "%s", st->value);
    } else if (strcasecmp(st->field, "connection") == 0 && strcasecmp(st->value, "close") == 0) {
        st->cur.close = true;
    }
    st->flen = st->vlen = 0;
    st->field[0] = st->value[0] = '\0';
    return 0;
}

static int rs_headers(llhttp_t *p)
{
    struct resp_state *st = p->data;
    int status = (int)llhttp_get_status_code(p);
    st->cur.status = status;
    if (status >= 100 && status < 200) {
        return 0;
    }
    unsigned i = st->out->n;
    int method = i < st->reqs->begun && i < FUZZ_MAX_MSGS ? st->reqs->method[i] : -1;
    if (method == HTTP_HEAD) {
        /* A request refused while its headers were still arriving (431) is
         * answered before the server knows its method: with a body. */
        if (status == 431) {
            const char *next = st->base + st->hdr_end;
            size_t left = st->len - st->hdr_end;
            return left == 0 || (left >= 7 && memcmp(next, "HTTP/1.", 7) == 0) ? 1 : 0;
        }
        return 1;
    }
    return 0;
}

static int rs_body(llhttp_t *p, const char *at, size_t len)
{
    struct resp_state *st = p->data;
    struct fuzz_responses *o = st->out;
    if (o->n != 0 || (st->cur.status >= 100 && st->cur.status < 200)) {
        return 0;
    }
    if (o->body_len + len + 1 > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < o->body_len + len + 1) {
            cap *= 2;
        }
        char *nb = realloc(o->body, cap);
        if (!nb) {
            abort();
        }
        o->body = nb;
        st->body_cap = cap;
    }
    memcpy(o->body + o->body_len, at, len);
    o->body_len += len;
    o->body[o->body_len] = '\0';
    return 0;
}

static int rs_complete(llhttp_t *p)
{
    struct resp_state *st = p->data;
    struct fuzz_responses *o = st->out;
    if (st->cur.status >= 100 && st->cur.status < 200) {
        o->interim++;
    } else {
        if (o->n < FUZZ_MAX_MSGS) {
            o->r[o->n] = st->cur;
        }
        o->n++;
        if (st->cur.close) {
            st->after_close = true;
        }
    }
    return st->finishing ? 0 : HPE_PAUSED;
}

int fuzz_parse_responses(const struct fuzz_reply *reply, const struct fuzz_requests *reqs,
                         struct fuzz_responses *out)
{
    static llhttp_settings_t s;
    static bool ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_message_begin = rs_begin;
        s.on_header_field = rs_field;
        s.on_header_value = rs_value;
        s.on_header_value_complete = rs_value_done;
        s.on_headers_complete = rs_headers;
        s.on_body = rs_body;
        s.on_message_complete = rs_complete;
        ready = true;
    }
    out->n = out->interim = 0;
    out->why[0] = '\0';
    out->body = NULL;
    out->body_len = 0;
    if (reply->total > reply->len) {
        snprintf(out->why, sizeof out->why, "more than %u bytes of answers", FUZZ_REPLY_CAP);
        return -1;
    }
    struct resp_state st = {.reqs = reqs, .out = out, .base = reply->data, .len = reply->len};
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    p.data = &st;
    size_t pos = 0;
    while (pos < reply->len) {
        const char *end = memmem(reply->data + pos, reply->len - pos, "\r\n\r\n", 4);
        st.hdr_end = end ? (size_t)(end - reply->data) + 4 : reply->len;
        const char *at = reply->data + pos;
        llhttp_errno_t e = llhttp_execute(&p, at, reply->len - pos);
        if (e == HPE_PAUSED) {
            const char *ep = llhttp_get_error_pos(&p);
            pos = ep && ep >= at ? (size_t)(ep - reply->data) : reply->len;
            llhttp_resume(&p);
            continue;
        }
        if (e != HPE_OK) {
            if (!out->why[0]) {
                snprintf(out->why, sizeof out->why, "unparsable answer at byte %zu: %s", pos,
                         llhttp_get_error_reason(&p));
            }
            return -1;
        }
        break;
    }
    /* Paused at the last message's end: let the parser step past it (no
     * input), so that finish sees a clean state. */
    if (llhttp_execute(&p, reply->data + reply->len, 0) != HPE_OK) {
        snprintf(out->why, sizeof out->why, "unparsable answer at its end: %s", llhttp_get_error_reason(&p));
        return -1;
    }
    st.finishing = true;
    llhttp_errno_t e = llhttp_finish(&p);
    if (e != HPE_OK) {
        snprintf(out->why, sizeof out->why, "the answers end inside a response: %s", llhttp_errno_name(e));
        return -1;
    }
    return 0;
}

_Noreturn void fuzz_fail(const char *why, const void *in, size_t inlen, const struct fuzz_reply *reply)
{
    fprintf(stderr, "\n==fuzz== %s\n==fuzz== input (%zu bytes): %.*s\n", why, inlen, (int)(inlen > 2000 ? 2000 : inlen),
            (const char *)in);
    if (reply) {
        fprintf(stderr, "==fuzz== answer (%zu bytes%s%s): %.*s\n", reply->total, reply->eof ? ", then FIN" : "",
                reply->reset ? ", then RST" : "", (int)(reply->len > 4000 ? 4000 : reply->len), reply->data);
    }
    abort();
}
