/* Server-side TLS over memory buffers, paired in memory with an mbedTLS client.
 * Usage: test_tls CERT_DIR (the output of gen_tls_certs.sh). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "tls/tls.h"

#define RECORD_CHANGE_CIPHER_SPEC 20
#define RECORD_HANDSHAKE 22
#define HANDSHAKE_CERTIFICATE 11

static const char *cert_dir;
static char scratch_dir[PATH_MAX];   /* per-run files for the tls_ctx_new error cases */

static struct {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca;
    struct tls_ctx *ec_ctx;
    struct tls_ctx *rsa_ctx;
} env;

static void path_in(char *buf, size_t buflen, const char *dir, const char *name)
{
    int n = snprintf(buf, buflen, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < buflen);
}

/* ---- in-memory byte pipes ---- */

struct pipe {
    unsigned char *data;
    size_t len;
    size_t off;
    size_t cap;
};

static void pipe_put(struct pipe *p, const void *src, size_t len)
{
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + len)
            cap *= 2;
        p->data = realloc(p->data, cap);
        assert_non_null(p->data);
        p->cap = cap;
    }
    memcpy(p->data + p->len, src, len);
    p->len += len;
}

static size_t pipe_pending(const struct pipe *p)
{
    return p->len - p->off;
}

static void pipe_free(struct pipe *p)
{
    free(p->data);
    *p = (struct pipe){ 0 };
}

/* ---- a server session paired with an mbedTLS client ---- */

struct client_options {
    int min_minor;                  /* 0: TLS 1.2 */
    int max_minor;                  /* 0: TLS 1.2 */
    const int *ciphersuites;        /* NULL: library default */
    const mbedtls_ssl_session *resume;
    bool allow_renegotiation;
    const char **alpn;              /* NULL: h2 and http/1.1; see no_alpn */
    bool no_alpn;
};

struct flight_summary {
    int handshake_types[16];
    int handshake_count;
    bool has_change_cipher_spec;
};

struct pair {
    struct tls_session *server;
    mbedtls_ssl_config client_conf;
    mbedtls_ssl_context client;
    struct pipe to_client;
    struct pipe to_server;
    struct pipe server_plain;       /* what on_plain delivered */
    size_t feed_chunk;              /* bytes per tls_session_feed; 0 = everything */
    int server_status;
    int client_error;
    bool client_done;
    int server_flights;
    struct flight_summary first_flight;
    bool measure_heap;
    long long server_heap;          /* net bytes the server's calls allocated */
    long long server_heap_peak;
};

static const char *client_alpn[] = { "h2", "http/1.1", NULL };

static int client_send(void *arg, const unsigned char *buf, size_t len)
{
    struct pair *p = arg;
    pipe_put(&p->to_server, buf, len);
    return (int)len;
}

static int client_recv(void *arg, unsigned char *buf, size_t len)
{
    struct pair *p = arg;
    size_t pending = pipe_pending(&p->to_client);
    if (pending == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < pending ? len : pending;
    memcpy(buf, p->to_client.data + p->to_client.off, n);
    p->to_client.off += n;
    return (int)n;
}

static void collect_plain(void *arg, const char *data, size_t len)
{
    struct pair *p = arg;
    assert_true(len > 0);
    pipe_put(&p->server_plain, data, len);
}

static long long heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long long)mi.uordblks + (long long)mi.hblkhd;
}

/* Runs one server call, charging its net heap use to the server. */
#define SERVER_CALL(p, expr) \
    do { \
        long long before_ = (p)->measure_heap ? heap_in_use() : 0; \
        expr; \
        if ((p)->measure_heap) { \
            (p)->server_heap += heap_in_use() - before_; \
            if ((p)->server_heap > (p)->server_heap_peak) \
                (p)->server_heap_peak = (p)->server_heap; \
        } \
    } while (0)

static void pair_init(struct pair *p, struct tls_ctx *ctx, const struct client_options *opt)
{
    static const struct client_options defaults = { 0 };
    if (opt == NULL)
        opt = &defaults;
    memset(p, 0, sizeof *p);
    p->server = tls_session_new(ctx);
    assert_non_null(p->server);

    mbedtls_ssl_config_init(&p->client_conf);
    mbedtls_ssl_init(&p->client);
    assert_int_equal(mbedtls_ssl_config_defaults(&p->client_conf, MBEDTLS_SSL_IS_CLIENT,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT), 0);
    mbedtls_ssl_conf_rng(&p->client_conf, mbedtls_ctr_drbg_random, &env.drbg);
    mbedtls_ssl_conf_authmode(&p->client_conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&p->client_conf, &env.ca, NULL);
    mbedtls_ssl_conf_min_version(&p->client_conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 opt->min_minor ? opt->min_minor : MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&p->client_conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 opt->max_minor ? opt->max_minor : MBEDTLS_SSL_MINOR_VERSION_3);
    if (opt->ciphersuites != NULL)
        mbedtls_ssl_conf_ciphersuites(&p->client_conf, opt->ciphersuites);
    if (!opt->no_alpn)
        assert_int_equal(mbedtls_ssl_conf_alpn_protocols(&p->client_conf,
                                                         opt->alpn ? opt->alpn : client_alpn), 0);
    mbedtls_ssl_conf_session_tickets(&p->client_conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    if (opt->allow_renegotiation)
        mbedtls_ssl_conf_renegotiation(&p->client_conf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);

    assert_int_equal(mbedtls_ssl_setup(&p->client, &p->client_conf), 0);
    assert_int_equal(mbedtls_ssl_set_hostname(&p->client, "localhost"), 0);
    mbedtls_ssl_set_bio(&p->client, p, client_send, client_recv, NULL);
    if (opt->resume != NULL)
        assert_int_equal(mbedtls_ssl_set_session(&p->client, opt->resume), 0);
}

static void pair_free(struct pair *p)
{
    tls_session_free(p->server);
    mbedtls_ssl_free(&p->client);
    mbedtls_ssl_config_free(&p->client_conf);
    pipe_free(&p->to_client);
    pipe_free(&p->to_server);
    pipe_free(&p->server_plain);
}

/* Notes which handshake messages travel in clear before ChangeCipherSpec:
 * that tells a full handshake (Certificate) from a resumed one (CCS at once). */
static void summarize_flight(struct flight_summary *f, const unsigned char *data, size_t len)
{
    size_t pos = 0;
    while (pos + 5 <= len && !f->has_change_cipher_spec) {
        int type = data[pos];
        size_t body = (size_t)data[pos + 3] << 8 | data[pos + 4];
        if (pos + 5 + body > len)
            break;
        if (type == RECORD_CHANGE_CIPHER_SPEC) {
            f->has_change_cipher_spec = true;
        } else if (type == RECORD_HANDSHAKE) {
            size_t msg = pos + 5;
            while (msg + 4 <= pos + 5 + body && f->handshake_count < 16) {
                size_t msg_len = (size_t)data[msg + 1] << 16 | (size_t)data[msg + 2] << 8 | data[msg + 3];
                f->handshake_types[f->handshake_count++] = data[msg];
                msg += 4 + msg_len;
            }
        }
        pos += 5 + body;
    }
}

static bool flight_has(const struct flight_summary *f, int handshake_type)
{
    for (int i = 0; i < f->handshake_count; i++)
        if (f->handshake_types[i] == handshake_type)
            return true;
    return false;
}

/* Client bytes to the server, feed_chunk at a time, reading after each feed. */
static bool deliver_to_server(struct pair *p)
{
    bool moved = false;
    while (pipe_pending(&p->to_server) > 0 && p->server_status == TLS_OK) {
        size_t n = pipe_pending(&p->to_server);
        if (p->feed_chunk != 0 && n > p->feed_chunk)
            n = p->feed_chunk;
        int fed;
        SERVER_CALL(p, fed = tls_session_feed(p->server, (const char *)p->to_server.data + p->to_server.off, n));
        assert_int_equal(fed, TLS_OK);
        p->to_server.off += n;
        SERVER_CALL(p, p->server_status = tls_session_read(p->server, collect_plain, p));
        moved = true;
    }
    return moved;
}

static bool deliver_to_client(struct pair *p)
{
    const char *data;
    size_t n = tls_session_out(p->server, &data);
    if (n == 0)
        return false;
    if (p->server_flights++ == 0)
        summarize_flight(&p->first_flight, (const unsigned char *)data, n);
    pipe_put(&p->to_client, data, n);
    SERVER_CALL(p, tls_session_out_consumed(p->server, n));
    return true;
}

/* Shuttles bytes until neither side has anything more to say. */
static void pump(struct pair *p)
{
    for (int round = 0; round < 1000; round++) {
        if (!p->client_done && p->client_error == 0) {
            int ret = mbedtls_ssl_handshake(&p->client);
            if (ret == 0)
                p->client_done = true;
            else if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE)
                p->client_error = ret;
        }
        bool moved = deliver_to_server(p);
        moved |= deliver_to_client(p);
        if (!moved)
            return;
    }
    fail_msg("pump did not settle");
}

static void handshake_ok(struct pair *p)
{
    pump(p);
    if (p->server_status != TLS_OK)
        fail_msg("server: %s", tls_session_error(p->server));
    assert_int_equal(p->client_error, 0);
    assert_true(p->client_done);
    assert_true(tls_session_handshake_done(p->server));
    assert_int_equal(mbedtls_ssl_get_verify_result(&p->client), 0);
}

/* Reads everything the client can decrypt right now. */
static void client_read_all(struct pair *p, struct pipe *into, int *final_ret)
{
    unsigned char buf[16384];
    for (;;) {
        int ret = mbedtls_ssl_read(&p->client, buf, sizeof buf);
        if (ret > 0) {
            pipe_put(into, buf, (size_t)ret);
            continue;
        }
        *final_ret = ret;
        return;
    }
}

static void client_write_all(struct pair *p, const unsigned char *data, size_t len)
{
    size_t written = 0;
    while (written < len) {
        int ret = mbedtls_ssl_write(&p->client, data + written, len - written);
        assert_true(ret > 0);
        written += (size_t)ret;
    }
}

static void fill_pattern(unsigned char *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

static bool suite_is_aead(const char *name)
{
    return strstr(name, "-GCM-") != NULL || strstr(name, "CHACHA20-POLY1305") != NULL;
}

/* ---- 1. handshakes ---- */

static void check_negotiated(struct pair *p, const char *key_exchange)
{
    const char *alpn = mbedtls_ssl_get_alpn_protocol(&p->client);
    assert_non_null(alpn);
    assert_string_equal(alpn, "http/1.1");
    assert_string_equal(mbedtls_ssl_get_version(&p->client), "TLSv1.2");
    const char *suite = mbedtls_ssl_get_ciphersuite(&p->client);
    assert_non_null(suite);
    assert_true(suite_is_aead(suite));
    assert_non_null(strstr(suite, key_exchange));
    assert_string_equal(tls_session_error(p->server), "");
}

static void test_handshake_ec(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    handshake_ok(&p);
    check_negotiated(&p, "TLS-ECDHE-ECDSA-");
    assert_true(flight_has(&p.first_flight, HANDSHAKE_CERTIFICATE));
    pair_free(&p);
}

static void test_handshake_rsa(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.rsa_ctx, NULL);
    handshake_ok(&p);
    check_negotiated(&p, "TLS-ECDHE-RSA-");
    pair_free(&p);
}

static void test_handshake_chacha20(void **state)
{
    (void)state;
    static const int chacha_only[] = {
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        0,
    };
    struct client_options opt = { .ciphersuites = chacha_only };
    struct pair p;
    pair_init(&p, env.rsa_ctx, &opt);
    handshake_ok(&p);
    assert_string_equal(mbedtls_ssl_get_ciphersuite(&p.client), "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256");
    pair_free(&p);
}

/* Clients without ALPN (openssl s_client, curl --no-alpn) are served. */
static void test_handshake_without_alpn(void **state)
{
    (void)state;
    struct client_options opt = { .no_alpn = true };
    struct pair p;
    pair_init(&p, env.ec_ctx, &opt);
    handshake_ok(&p);
    assert_null(mbedtls_ssl_get_alpn_protocol(&p.client));
    pair_free(&p);
}

/* ---- 2. application data ---- */

static void test_small_data_both_ways(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    handshake_ok(&p);

    static const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client_write_all(&p, (const unsigned char *)request, strlen(request));
    client_write_all(&p, (const unsigned char *)"second", 6);
    pump(&p);   /* both records arrive in one feed: the read must drain both */
    assert_int_equal(p.server_status, TLS_OK);
    assert_int_equal(p.server_plain.len, strlen(request) + 6);
    assert_memory_equal(p.server_plain.data, request, strlen(request));
    assert_memory_equal(p.server_plain.data + strlen(request), "second", 6);

    static const char response[] = "HTTP/1.1 204 No Content\r\n\r\n";
    assert_int_equal(tls_session_write(p.server, response, strlen(response)), TLS_OK);
    assert_int_equal(tls_session_write(p.server, "", 0), TLS_OK);
    pump(&p);
    struct pipe got = { 0 };
    int ret;
    client_read_all(&p, &got, &ret);
    assert_int_equal(ret, MBEDTLS_ERR_SSL_WANT_READ);
    assert_int_equal(got.len, strlen(response));
    assert_memory_equal(got.data, response, strlen(response));
    pipe_free(&got);
    pair_free(&p);
}

static void test_one_mebibyte_both_ways(void **state)
{
    (void)state;
    const size_t size = 1u << 20;
    unsigned char *payload = malloc(size);
    assert_non_null(payload);
    fill_pattern(payload, size, 42);

    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    handshake_ok(&p);

    client_write_all(&p, payload, size);
    pump(&p);
    assert_int_equal(p.server_status, TLS_OK);
    assert_int_equal(p.server_plain.len, size);
    assert_true(memcmp(p.server_plain.data, payload, size) == 0);

    assert_int_equal(tls_session_write(p.server, (const char *)payload, size), TLS_OK);
    const char *out;
    size_t out_len = tls_session_out(p.server, &out);
    /* At least 64 records, each with a header and AEAD overhead. */
    assert_true(out_len >= size + 64 * (5 + 8 + 16));

    /* The connection may send in pieces; hand the client uneven slices. */
    struct pipe got = { 0 };
    int ret = 0;
    size_t slice = 1000;
    while ((out_len = tls_session_out(p.server, &out)) > 0) {
        size_t n = out_len < slice ? out_len : slice;
        pipe_put(&p.to_client, out, n);
        tls_session_out_consumed(p.server, n);
        slice = slice * 3 % 70001 + 1;
        client_read_all(&p, &got, &ret);
        assert_int_equal(ret, MBEDTLS_ERR_SSL_WANT_READ);
    }
    assert_int_equal(got.len, size);
    assert_true(memcmp(got.data, payload, size) == 0);

    pipe_free(&got);
    pair_free(&p);
    free(payload);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    struct tls_ctx *ctxs[] = { env.ec_ctx, env.rsa_ctx };
    for (size_t i = 0; i < 2; i++) {
        struct pair p;
        pair_init(&p, ctxs[i], NULL);
        p.feed_chunk = 1;
        handshake_ok(&p);
        static const char message[] = "one byte at a time";
        client_write_all(&p, (const unsigned char *)message, strlen(message));
        pump(&p);
        assert_int_equal(p.server_plain.len, strlen(message));
        assert_memory_equal(p.server_plain.data, message, strlen(message));
        pair_free(&p);
    }
}

static void test_write_before_handshake(void **state)
{
    (void)state;
    struct tls_session *s = tls_session_new(env.ec_ctx);
    assert_int_equal(tls_session_write(s, "x", 1), TLS_ERROR);
    assert_true(strlen(tls_session_error(s)) > 0);
    /* Nothing is set up yet: these must be harmless no-ops. */
    assert_int_equal(tls_session_read(s, collect_plain, NULL), TLS_OK);
    tls_session_close_notify(s);
    const char *out;
    assert_int_equal(tls_session_out(s, &out), 0);
    tls_session_free(s);
}

/* ---- 3. refused clients ---- */

static void expect_refused(struct tls_ctx *ctx, const struct client_options *opt)
{
    struct pair p;
    pair_init(&p, ctx, opt);
    pump(&p);
    assert_int_equal(p.server_status, TLS_ERROR);
    assert_false(tls_session_handshake_done(p.server));
    assert_true(strlen(tls_session_error(p.server)) > 0);
    print_message("    %s\n", tls_session_error(p.server));
    /* The alert reached the client, which gives up instead of waiting. */
    assert_int_equal(p.client_error, MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
    /* A failed session stays failed. */
    assert_int_equal(tls_session_read(p.server, collect_plain, &p), TLS_ERROR);
    assert_int_equal(tls_session_feed(p.server, "x", 1), TLS_ERROR);
    assert_int_equal(tls_session_write(p.server, "x", 1), TLS_ERROR);
    pair_free(&p);
}

static void test_refuse_tls11(void **state)
{
    (void)state;
    struct client_options opt = {
        .min_minor = MBEDTLS_SSL_MINOR_VERSION_1,
        .max_minor = MBEDTLS_SSL_MINOR_VERSION_2,
    };
    expect_refused(env.ec_ctx, &opt);
    expect_refused(env.rsa_ctx, &opt);
}

static void test_refuse_cbc_only(void **state)
{
    (void)state;
    static const int cbc_only[] = {
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
        MBEDTLS_TLS_RSA_WITH_AES_128_CBC_SHA256,
        0,
    };
    struct client_options opt = { .ciphersuites = cbc_only };
    expect_refused(env.ec_ctx, &opt);
    expect_refused(env.rsa_ctx, &opt);
}

/* RFC 7301: offering ALPN without http/1.1 earns no_application_protocol. */
static void test_refuse_h2_only(void **state)
{
    (void)state;
    static const char *h2_only[] = { "h2", NULL };
    struct client_options opt = { .alpn = h2_only };
    expect_refused(env.ec_ctx, &opt);
}

/* A client that gives up politely mid-handshake is a close, not an error. */
static void test_close_during_handshake(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    assert_int_equal(mbedtls_ssl_handshake(&p.client), MBEDTLS_ERR_SSL_WANT_READ);
    deliver_to_server(&p);
    assert_int_equal(p.server_status, TLS_OK);
    /* close_notify in clear: alert record, warning level, close_notify */
    static const unsigned char alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00 };
    pipe_put(&p.to_server, alert, sizeof alert);
    deliver_to_server(&p);
    assert_int_equal(p.server_status, TLS_CLOSED);
    assert_false(tls_session_handshake_done(p.server));
    pair_free(&p);
}

/* ---- 4. garbage ---- */

static int feed_and_read(struct tls_session *s, const void *data, size_t len)
{
    if (tls_session_feed(s, data, len) != TLS_OK)
        return TLS_ERROR;
    return tls_session_read(s, collect_plain, NULL);
}

static void test_garbage_plain_http(void **state)
{
    (void)state;
    static const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    struct tls_session *s = tls_session_new(env.ec_ctx);
    assert_int_equal(feed_and_read(s, request, strlen(request)), TLS_ERROR);
    assert_true(strlen(tls_session_error(s)) > 0);
    print_message("    %s\n", tls_session_error(s));
    tls_session_free(s);
}

static void test_garbage_random(void **state)
{
    (void)state;
    unsigned char buf[4096];
    for (uint32_t seed = 1; seed <= 300; seed++) {
        size_t len = 1 + seed * 7919 % sizeof buf;
        fill_pattern(buf, len, seed);
        struct tls_session *s = tls_session_new(seed % 2 ? env.ec_ctx : env.rsa_ctx);
        int status = feed_and_read(s, buf, len);
        /* A plausible record header may leave the server waiting for more. */
        assert_true(status == TLS_ERROR || status == TLS_OK);
        const char *out;
        tls_session_out(s, &out);
        tls_session_free(s);
    }
    /* No content type is 0: this one must fail outright. */
    fill_pattern(buf, sizeof buf, 7);
    buf[0] = 0;
    struct tls_session *s = tls_session_new(env.ec_ctx);
    assert_int_equal(feed_and_read(s, buf, sizeof buf), TLS_ERROR);
    tls_session_free(s);
}

/* A real ClientHello, truncated or with one byte flipped, must never crash. */
static void test_damaged_client_hello(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    assert_int_equal(mbedtls_ssl_handshake(&p.client), MBEDTLS_ERR_SSL_WANT_READ);
    size_t hello_len = pipe_pending(&p.to_server);
    unsigned char *hello = malloc(hello_len);
    assert_non_null(hello);
    memcpy(hello, p.to_server.data, hello_len);
    pair_free(&p);

    /* Truncated: the server waits for the rest; zeros instead of the rest
     * make a malformed hello. */
    static const unsigned char zeros[20000];
    for (size_t cut = 1; cut < hello_len; cut += 7) {
        struct tls_session *s = tls_session_new(env.ec_ctx);
        assert_int_equal(feed_and_read(s, hello, cut), TLS_OK);
        assert_false(tls_session_handshake_done(s));
        tls_session_free(s);

        s = tls_session_new(env.ec_ctx);
        assert_int_equal(feed_and_read(s, hello, cut), TLS_OK);
        assert_int_equal(feed_and_read(s, zeros, sizeof zeros), TLS_ERROR);
        tls_session_free(s);
    }
    unsigned char *damaged = malloc(hello_len);
    assert_non_null(damaged);
    for (size_t pos = 0; pos < hello_len; pos++) {
        memcpy(damaged, hello, hello_len);
        damaged[pos] ^= (unsigned char)(0x5a + pos);
        struct tls_session *s = tls_session_new(env.rsa_ctx);
        int status = feed_and_read(s, damaged, hello_len);
        assert_true(status == TLS_OK || status == TLS_ERROR);
        tls_session_free(s);
    }
    free(damaged);
    free(hello);
}

/* After the handshake a forged or corrupted record is fatal, and the server
 * tells the client why. */
static void test_tampered_record(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    handshake_ok(&p);
    client_write_all(&p, (const unsigned char *)"hello", 5);
    p.to_server.data[p.to_server.len - 1] ^= 1;     /* inside the GCM tag */
    pump(&p);
    assert_int_equal(p.server_status, TLS_ERROR);
    assert_int_equal(p.server_plain.len, 0);
    print_message("    %s\n", tls_session_error(p.server));
    struct pipe got = { 0 };
    int ret;
    client_read_all(&p, &got, &ret);
    assert_int_equal(ret, MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
    pipe_free(&got);
    pair_free(&p);
}

/* Renegotiation is disabled: a client asking for it is told no, and the
 * connection either carries on or ends cleanly, never crashes. */
static void test_renegotiation_refused(void **state)
{
    (void)state;
    struct client_options opt = { .allow_renegotiation = true };
    struct pair p;
    pair_init(&p, env.ec_ctx, &opt);
    handshake_ok(&p);
    int ret = mbedtls_ssl_renegotiate(&p.client);
    assert_true(ret == MBEDTLS_ERR_SSL_WANT_READ || ret == 0);
    size_t out_before = p.to_client.len;
    pump(&p);
    assert_int_equal(p.server_status, TLS_OK);
    assert_true(p.to_client.len > out_before);     /* the no_renegotiation alert */
    ret = mbedtls_ssl_renegotiate(&p.client);
    print_message("    client after refusal: %d\n", ret);
    assert_int_equal(tls_session_write(p.server, "still here", 10), TLS_OK);
    pair_free(&p);
}

/* ---- 5. close_notify ---- */

static void test_close_notify_from_client(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.ec_ctx, NULL);
    handshake_ok(&p);
    client_write_all(&p, (const unsigned char *)"last words", 10);
    assert_int_equal(mbedtls_ssl_close_notify(&p.client), 0);
    pump(&p);
    /* Data ahead of the alert in the same feed is still delivered. */
    assert_int_equal(p.server_status, TLS_CLOSED);
    assert_int_equal(p.server_plain.len, 10);
    assert_memory_equal(p.server_plain.data, "last words", 10);
    assert_int_equal(tls_session_read(p.server, collect_plain, &p), TLS_CLOSED);
    pair_free(&p);
}

static void test_close_notify_from_server(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, env.rsa_ctx, NULL);
    handshake_ok(&p);
    assert_int_equal(tls_session_write(p.server, "bye", 3), TLS_OK);
    tls_session_close_notify(p.server);
    tls_session_close_notify(p.server);    /* idempotent */
    assert_int_equal(tls_session_write(p.server, "late", 4), TLS_ERROR);
    pump(&p);
    struct pipe got = { 0 };
    int ret;
    client_read_all(&p, &got, &ret);
    assert_int_equal(ret, MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
    assert_int_equal(got.len, 3);
    assert_memory_equal(got.data, "bye", 3);
    pipe_free(&got);
    pair_free(&p);
}

/* ---- 6. tls_ctx_new errors ---- */

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
}

static void expect_ctx_error(const char *cert, const char *key, const char *must_name,
                             const char *also_name, const char *must_say)
{
    char err[512] = "unchanged";
    struct tls_ctx *ctx = tls_ctx_new(cert, key, err, sizeof err);
    if (ctx != NULL) {
        tls_ctx_free(ctx);
        fail_msg("tls_ctx_new(%s, %s) succeeded", cert, key);
    }
    if (strstr(err, must_name) == NULL || (also_name && strstr(err, also_name) == NULL)
        || strstr(err, must_say) == NULL)
        fail_msg("unexpected message: %s", err);
    assert_null(strchr(err, '\n'));
    print_message("    %s\n", err);
}

static void test_ctx_errors(void **state)
{
    (void)state;
    char ec_chain[PATH_MAX], ec_key[PATH_MAX], rsa_chain[PATH_MAX], rsa_key[PATH_MAX], other_key[PATH_MAX];
    char missing[PATH_MAX], garbage[PATH_MAX], empty[PATH_MAX], encrypted[PATH_MAX];
    path_in(ec_chain, sizeof ec_chain, cert_dir, "ec-chain.pem");
    path_in(ec_key, sizeof ec_key, cert_dir, "ec-key.pem");
    path_in(rsa_chain, sizeof rsa_chain, cert_dir, "rsa-chain.pem");
    path_in(rsa_key, sizeof rsa_key, cert_dir, "rsa-key.pem");
    path_in(other_key, sizeof other_key, cert_dir, "other-ec-key.pem");
    path_in(encrypted, sizeof encrypted, cert_dir, "encrypted-ec-key.pem");
    path_in(missing, sizeof missing, scratch_dir, "missing.pem");
    path_in(garbage, sizeof garbage, scratch_dir, "garbage.pem");
    path_in(empty, sizeof empty, scratch_dir, "empty.pem");
    write_file(garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n");
    write_file(empty, "");

    expect_ctx_error(missing, ec_key, missing, NULL, "No such file");
    expect_ctx_error(garbage, ec_key, garbage, NULL, "cannot parse");
    expect_ctx_error(empty, ec_key, empty, NULL, "empty");
    expect_ctx_error(ec_key, ec_key, ec_key, NULL, "cannot parse");      /* a key is no certificate */
    expect_ctx_error(scratch_dir, ec_key, scratch_dir, NULL, "not a regular file");
    expect_ctx_error(ec_chain, missing, missing, NULL, "No such file");
    expect_ctx_error(ec_chain, garbage, garbage, NULL, "cannot parse");
    expect_ctx_error(ec_chain, ec_chain, ec_chain, NULL, "cannot parse"); /* a certificate is no key */
    expect_ctx_error(ec_chain, encrypted, encrypted, NULL, "encrypted");
    expect_ctx_error(ec_chain, rsa_key, rsa_key, ec_chain, "does not match");
    expect_ctx_error(ec_chain, other_key, other_key, ec_chain, "does not match");
    expect_ctx_error(rsa_chain, ec_key, ec_key, rsa_chain, "does not match");

    /* A NULL error buffer is allowed. */
    assert_null(tls_ctx_new(missing, ec_key, NULL, 0));
    unlink(garbage);
    unlink(empty);
}

/* ---- 7. resumption ---- */

static void test_ticket_resumption(void **state)
{
    (void)state;
    struct pair first;
    pair_init(&first, env.ec_ctx, NULL);
    handshake_ok(&first);
    assert_true(flight_has(&first.first_flight, HANDSHAKE_CERTIFICATE));
    assert_false(first.first_flight.has_change_cipher_spec);

    mbedtls_ssl_session saved;
    mbedtls_ssl_session_init(&saved);
    assert_int_equal(mbedtls_ssl_get_session(&first.client, &saved), 0);
    assert_non_null(saved.ticket);
    assert_true(saved.ticket_len > 0);
    pair_free(&first);

    /* Abbreviated handshake: the server's first flight is ServerHello,
     * NewSessionTicket and ChangeCipherSpec, with no Certificate. */
    struct client_options opt = { .resume = &saved };
    struct pair again;
    pair_init(&again, env.ec_ctx, &opt);
    handshake_ok(&again);
    assert_true(again.first_flight.has_change_cipher_spec);
    assert_false(flight_has(&again.first_flight, HANDSHAKE_CERTIFICATE));
    assert_int_equal(again.server_flights, 1);
    client_write_all(&again, (const unsigned char *)"resumed", 7);
    pump(&again);
    assert_int_equal(again.server_plain.len, 7);
    pair_free(&again);

    /* Another listener's ticket keys cannot open it: a full handshake follows. */
    struct pair elsewhere;
    pair_init(&elsewhere, env.rsa_ctx, &opt);
    handshake_ok(&elsewhere);
    assert_true(flight_has(&elsewhere.first_flight, HANDSHAKE_CERTIFICATE));
    pair_free(&elsewhere);

    mbedtls_ssl_session_free(&saved);
}

/* ---- memory (informational) ---- */

/* Prints what a session costs; sampled between calls, so transient peaks
 * inside one call are not seen.  Under valgrind or ASan the allocator is not
 * glibc's and mallinfo2 reports nothing. */
static void test_session_memory(void **state)
{
    (void)state;
    long long before = heap_in_use();
    struct tls_session *fresh = tls_session_new(env.ec_ctx);
    long long fresh_bytes = heap_in_use() - before;
    tls_session_free(fresh);
    if (fresh_bytes <= 0) {
        print_message("    heap not measurable with this allocator\n");
        return;
    }
    print_message("    fresh session before any input: %lld B\n", fresh_bytes);

    struct tls_ctx *ctxs[] = { env.ec_ctx, env.rsa_ctx };
    const char *names[] = { "EC P-256", "RSA 2048" };
    for (size_t i = 0; i < 2; i++) {
        struct pair p;
        pair_init(&p, ctxs[i], NULL);
        p.measure_heap = true;
        handshake_ok(&p);
        p.measure_heap = false;
        print_message("    %s: idle after handshake %lld B, highest between steps %lld B (plus the fresh session)\n",
                      names[i], p.server_heap, p.server_heap_peak);
        pair_free(&p);
    }
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    (void)state;
    char path[PATH_MAX], key[PATH_MAX], err[512];
    mbedtls_entropy_init(&env.entropy);
    mbedtls_ctr_drbg_init(&env.drbg);
    mbedtls_x509_crt_init(&env.ca);
    if (mbedtls_ctr_drbg_seed(&env.drbg, mbedtls_entropy_func, &env.entropy,
                              (const unsigned char *)"test client", 11) != 0)
        return -1;
    path_in(path, sizeof path, cert_dir, "ca-cert.pem");
    if (mbedtls_x509_crt_parse_file(&env.ca, path) != 0)
        return -1;

    path_in(path, sizeof path, cert_dir, "ec-chain.pem");
    path_in(key, sizeof key, cert_dir, "ec-key.pem");
    env.ec_ctx = tls_ctx_new(path, key, err, sizeof err);
    if (env.ec_ctx == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    path_in(path, sizeof path, cert_dir, "rsa-chain.pem");
    path_in(key, sizeof key, cert_dir, "rsa-key.pem");
    env.rsa_ctx = tls_ctx_new(path, key, err, sizeof err);
    if (env.rsa_ctx == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }

    snprintf(scratch_dir, sizeof scratch_dir, "%s/gtm-tls-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(scratch_dir) == NULL)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tls_ctx_free(env.ec_ctx);
    tls_ctx_free(env.rsa_ctx);
    mbedtls_x509_crt_free(&env.ca);
    mbedtls_ctr_drbg_free(&env.drbg);
    mbedtls_entropy_free(&env.entropy);
    if (scratch_dir[0] != '\0')
        rmdir(scratch_dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_ec),
        cmocka_unit_test(test_handshake_rsa),
        cmocka_unit_test(test_handshake_chacha20),
        cmocka_unit_test(test_handshake_without_alpn),
        cmocka_unit_test(test_small_data_both_ways),
        cmocka_unit_test(test_one_mebibyte_both_ways),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_refuse_tls11),
        cmocka_unit_test(test_refuse_cbc_only),
        cmocka_unit_test(test_refuse_h2_only),
        cmocka_unit_test(test_close_during_handshake),
        cmocka_unit_test(test_garbage_plain_http),
        cmocka_unit_test(test_garbage_random),
        cmocka_unit_test(test_damaged_client_hello),
        cmocka_unit_test(test_tampered_record),
        cmocka_unit_test(test_renegotiation_refused),
        cmocka_unit_test(test_close_notify_from_client),
        cmocka_unit_test(test_close_notify_from_server),
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_ticket_resumption),
        cmocka_unit_test(test_session_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
