/* The per-connection half of the TLS component: an mbedtls_ssl_context whose
 * transport is two byte queues.  The connection owns the socket and moves the
 * bytes; mbedTLS only ever sees memory.
 *
 * Rules for the caller beyond tls.h:
 *  - the pointer from tls_session_out stays valid only until the next call
 *    into the session (reads and writes append to the queue, which may move);
 *  - on_plain must not free the session; it may call tls_session_write and
 *    tls_session_close_notify. */
#include "tls/tls.h"
#include "tls/tls_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>

/* A queue holding less than a quarter of its capacity shrinks, but not below
 * this; a drained queue frees its block, so an idle session holds nothing
 * besides mbedTLS's own record buffers. */
#define QUEUE_SHRINK_FLOOR 4096u
#define QUEUE_MIN_GROWTH 1024u

/* WANT_WRITE (and the async codes) cannot come back from memory transports,
 * but mbedTLS requires a retry when they do; the bound turns a library
 * surprise into an error instead of a spin. */
#define MAX_RETRIES 64

/* Unconsumed bytes are data[head, tail). */
struct byte_queue {
    unsigned char *data;
    size_t head;
    size_t tail;
    size_t cap;
};

struct tls_session {
    struct tls_ctx *ctx;
    mbedtls_ssl_context ssl;
    struct byte_queue in;       /* ciphertext from the peer, not yet read by mbedTLS */
    struct byte_queue out;      /* ciphertext for the peer, not yet sent */
    bool ssl_ready;             /* mbedtls_ssl_setup done (deferred until input arrives) */
    bool handshake_done;
    bool failed;
    bool peer_closed;
    bool close_sent;
    char error[192];
};

/* ---- byte queues ---- */

static size_t queue_pending(const struct byte_queue *q)
{
    return q->tail - q->head;
}

static void queue_release(struct byte_queue *q)
{
    free(q->data);
    *q = (struct byte_queue){ 0 };
}

static void queue_compact(struct byte_queue *q)
{
    if (q->head == 0)
        return;
    size_t pending = queue_pending(q);
    if (pending > 0)
        memmove(q->data, q->data + q->head, pending);
    q->head = 0;
    q->tail = pending;
}

static int queue_append(struct byte_queue *q, const void *src, size_t len)
{
    if (len == 0)
        return 0;
    size_t pending = queue_pending(q);
    if (len > SIZE_MAX / 2 - pending)
        return -1;
    size_t needed = pending + len;
    if (q->tail + len > q->cap)
        queue_compact(q);
    if (needed > q->cap) {
        size_t new_cap = q->cap * 2;
        if (new_cap < needed)
            new_cap = needed;
        if (new_cap < QUEUE_MIN_GROWTH)
            new_cap = QUEUE_MIN_GROWTH;
        unsigned char *grown = realloc(q->data, new_cap);
        if (grown == NULL)
            return -1;
        q->data = grown;
        q->cap = new_cap;
    }
    memcpy(q->data + q->tail, src, len);
    q->tail += len;
    return 0;
}

static void queue_consume(struct byte_queue *q, size_t len)
{
    size_t pending = queue_pending(q);
    q->head += len < pending ? len : pending;
    if (q->head == q->tail)
        q->head = q->tail = 0;
}

/* Keeps memory proportional to what is pending: a burst (a 1 MiB response,
 * a large upload) must not leave its buffer behind for the connection's
 * lifetime. */
static void queue_settle(struct byte_queue *q)
{
    size_t pending = queue_pending(q);
    if (pending == 0) {
        queue_release(q);
        return;
    }
    if (q->cap <= QUEUE_SHRINK_FLOOR || pending > q->cap / 4)
        return;
    queue_compact(q);
    size_t new_cap = pending * 2 > QUEUE_SHRINK_FLOOR ? pending * 2 : QUEUE_SHRINK_FLOOR;
    unsigned char *shrunk = realloc(q->data, new_cap);
    if (shrunk != NULL) {       /* on failure the larger block simply stays */
        q->data = shrunk;
        q->cap = new_cap;
    }
}

/* ---- mbedTLS transport callbacks ---- */

static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tls_session *s = arg;
    /* Never WANT_WRITE: the connection applies backpressure on the socket. */
    if (queue_append(&s->out, buf, len) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;     /* mbedTLS never hands over more than one record */
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tls_session *s = arg;
    size_t pending = queue_pending(&s->in);
    if (pending == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < pending ? len : pending;
    if (n > INT32_MAX)
        n = INT32_MAX;
    memcpy(buf, s->in.data + s->in.head, n);
    queue_consume(&s->in, n);
    return (int)n;
}

/* ---- helpers ---- */

static int fail(struct tls_session *s, const char *during, int code)
{
    char reason[128];
    mbedtls_strerror(code, reason, sizeof reason);
    if (reason[0] == '\0')
        snprintf(reason, sizeof reason, "mbedTLS error -0x%04x", (unsigned)-code);
    snprintf(s->error, sizeof s->error, "TLS %s failed: %s", during, reason);
    s->failed = true;
    return TLS_ERROR;
}

static bool is_retryable(int code)
{
    return code == MBEDTLS_ERR_SSL_WANT_WRITE
        || code == MBEDTLS_ERR_SSL_ASYNC_IN_PROGRESS
        || code == MBEDTLS_ERR_SSL_CRYPTO_IN_PROGRESS;
}

/* mbedtls_ssl_setup allocates ~33 KiB of record buffers; connections that
 * never send a byte should not pay for them. */
static int ensure_setup(struct tls_session *s)
{
    if (s->ssl_ready)
        return 0;
    int ret = mbedtls_ssl_setup(&s->ssl, &s->ctx->conf);
    if (ret != 0)
        return fail(s, "setup", ret);
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    s->ssl_ready = true;
    return 0;
}

/* ---- interface ---- */

struct tls_session *tls_session_new(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return NULL;
    struct tls_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->ctx = ctx;
    mbedtls_ssl_init(&s->ssl);
    return s;
}

void tls_session_free(struct tls_session *s)
{
    if (s == NULL)
        return;
    mbedtls_ssl_free(&s->ssl);
    queue_release(&s->in);
    queue_release(&s->out);
    free(s);
}

int tls_session_feed(struct tls_session *s, const char *data, size_t len)
{
    if (s->failed)
        return TLS_ERROR;
    if (s->peer_closed)
        return TLS_OK;          /* nothing after close_notify is meaningful */
    if (queue_append(&s->in, data, len) != 0) {
        snprintf(s->error, sizeof s->error, "TLS input: out of memory");
        s->failed = true;
        return TLS_ERROR;
    }
    return TLS_OK;
}

static int drive_handshake(struct tls_session *s)
{
    int retries = 0;
    for (;;) {
        int ret = mbedtls_ssl_handshake(&s->ssl);
        if (ret == 0) {
            s->handshake_done = true;
            return TLS_OK;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ)
            return TLS_OK;
        if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {   /* a client giving up politely */
            s->peer_closed = true;
            return TLS_CLOSED;
        }
        if (is_retryable(ret) && ++retries <= MAX_RETRIES)
            continue;
        return fail(s, "handshake", ret);
    }
}

int tls_session_read(struct tls_session *s,
                     void (*on_plain)(void *arg, const char *data, size_t len), void *arg)
{
    if (s->failed)
        return TLS_ERROR;
    if (s->peer_closed)
        return TLS_CLOSED;
    if (!s->ssl_ready) {
        if (queue_pending(&s->in) == 0)
            return TLS_OK;
        if (ensure_setup(s) != 0)
            return TLS_ERROR;
    }

    int status = TLS_OK;
    if (!s->handshake_done) {
        status = drive_handshake(s);
        if (status != TLS_OK || !s->handshake_done)
            goto out;
    }

    /* Drain completely: one feed can hold several records, and mbedTLS hands
     * out at most one record's plaintext per call. */
    unsigned char plain[16384];
    size_t plain_used = 0;
    int retries = 0;
    for (;;) {
        int ret = mbedtls_ssl_read(&s->ssl, plain, sizeof plain);
        if (ret > 0) {
            if ((size_t)ret > plain_used)
                plain_used = (size_t)ret;
            if (on_plain != NULL)
                on_plain(arg, (const char *)plain, (size_t)ret);
            if (s->failed) {    /* on_plain wrote and that failed */
                status = TLS_ERROR;
                break;
            }
            continue;
        }
        /* 0 only means transport EOF, which bio_recv never reports. */
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == 0)
            break;
        if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            s->peer_closed = true;
            status = TLS_CLOSED;
            break;
        }
        if (is_retryable(ret) && ++retries <= MAX_RETRIES)
            continue;
        status = fail(s, "read", ret);
        break;
    }
    mbedtls_platform_zeroize(plain, plain_used);

out:
    queue_settle(&s->in);
    return status;
}

int tls_session_write(struct tls_session *s, const char *data, size_t len)
{
    if (s->failed)
        return TLS_ERROR;
    if (!s->handshake_done || s->close_sent) {
        snprintf(s->error, sizeof s->error, "TLS write %s",
                 s->close_sent ? "after close_notify" : "before the handshake finished");
        return TLS_ERROR;
    }
    const unsigned char *bytes = (const unsigned char *)data;
    size_t written = 0;
    int retries = 0;
    while (written < len) {
        /* After WANT_WRITE mbedTLS needs the very same buffer and length again;
         * `written` is unchanged then, so the arguments are too. */
        int ret = mbedtls_ssl_write(&s->ssl, bytes + written, len - written);
        if (ret > 0) {
            written += (size_t)ret;
            retries = 0;
            continue;
        }
        if ((ret == 0 || is_retryable(ret) || ret == MBEDTLS_ERR_SSL_WANT_READ)
            && ++retries <= MAX_RETRIES)
            continue;
        return fail(s, "write", ret);
    }
    return TLS_OK;
}

void tls_session_close_notify(struct tls_session *s)
{
    /* Before the handshake there is no secure channel to close; mbedTLS would
     * send nothing either. */
    if (!s->ssl_ready || !s->handshake_done || s->failed || s->close_sent)
        return;
    s->close_sent = true;
    int retries = 0;
    int ret;
    do {
        ret = mbedtls_ssl_close_notify(&s->ssl);
    } while (is_retryable(ret) && ++retries <= MAX_RETRIES);
    if (ret != 0)
        fail(s, "close_notify", ret);
}

size_t tls_session_out(struct tls_session *s, const char **data)
{
    size_t pending = queue_pending(&s->out);
    *data = pending > 0 ? (const char *)s->out.data + s->out.head : NULL;
    return pending;
}

void tls_session_out_consumed(struct tls_session *s, size_t len)
{
    queue_consume(&s->out, len);
    queue_settle(&s->out);
}

int tls_session_handshake_done(const struct tls_session *s)
{
    return s->handshake_done;
}

const char *tls_session_error(const struct tls_session *s)
{
    return s->error;
}
