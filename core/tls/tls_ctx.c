/* The per-listener half of the TLS component: certificate chain, private key,
 * random generators, ticket keys and the shared mbedtls_ssl_config. */
#include "util/err.h"
#include "tls/tls.h"
#include "tls/tls_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/error.h>

/* Tickets make resumption cheap for returning clients; keys rotate with this
 * period (mbedTLS keeps the previous key so a ticket stays usable across one
 * rotation). */
#define TICKET_LIFETIME_SECONDS (24u * 60u * 60u)

/* AEAD only: CBC suites carry padding-oracle history and are not needed by any
 * client that speaks TLS 1.2 with ECDHE.  Order is the server's preference:
 * mbedTLS picks the first entry the client also offers (and that fits the
 * certificate's key type). */
static const int aead_ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

/* ECDHE groups, preferred first.  mbedTLS' default is every curve it has,
 * largest first: P-521 chosen whenever offered (slow), and secp192r1/secp224r1
 * (96 and 112-bit security) taken from a client that offers only those.
 * mbedtls_ssl_conf_curves keeps the pointer too. */
static const mbedtls_ecp_group_id ecdhe_groups[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

/* mbedtls_ssl_conf_alpn_protocols keeps the pointer, hence static storage. */
static const char *alpn_protocols[] = { "http/1.1", NULL };

static void mbedtls_error_text(int code, char *buf, size_t buflen)
{
    mbedtls_strerror(code, buf, buflen);
    if (buf[0] == '\0')
        snprintf(buf, buflen, "mbedTLS error -0x%04x", (unsigned)-code);
}

/* mbedTLS reports a missing file and an unreadable one alike as a generic
 * FILE_IO_ERROR; checking first lets the message say which it was. */
static int check_readable_file(const char *what, const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        err_set(err, errlen, "%s: no file given", what);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errlen, "%s: cannot open %s: %s", what, path, strerror(errno));
        return -1;
    }
    struct stat st;
    int stat_failed = fstat(fd, &st) != 0;
    int saved_errno = errno;
    close(fd);
    if (stat_failed) {
        err_set(err, errlen, "%s: cannot stat %s: %s", what, path, strerror(saved_errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, errlen, "%s: %s is not a regular file", what, path);
        return -1;
    }
    if (st.st_size == 0) {
        err_set(err, errlen, "%s: %s is empty", what, path);
        return -1;
    }
    return 0;
}

static int load_chain(struct tls_ctx *ctx, const char *cert_file, char *err, size_t errlen)
{
    static const char what[] = "GTM_TLS_CERT";
    char reason[160];

    if (check_readable_file(what, cert_file, err, errlen) != 0)
        return -1;
    int ret = mbedtls_x509_crt_parse_file(&ctx->chain, cert_file);
    if (ret < 0) {
        mbedtls_error_text(ret, reason, sizeof reason);
        err_set(err, errlen, "%s: cannot parse %s: %s", what, cert_file, reason);
        return -1;
    }
    /* A positive count means some PEM blocks were skipped; serving a chain
     * with holes would only fail later, on the client. */
    if (ret > 0) {
        err_set(err, errlen, "%s: cannot parse %s: %d certificate(s) in the chain are invalid",
                  what, cert_file, ret);
        return -1;
    }
    return 0;
}

static int load_key(struct tls_ctx *ctx, const char *cert_file, const char *key_file,
                    char *err, size_t errlen)
{
    static const char what[] = "GTM_TLS_KEY";
    char reason[160];

    if (check_readable_file(what, key_file, err, errlen) != 0)
        return -1;
    int ret = mbedtls_pk_parse_keyfile(&ctx->key, key_file, NULL);
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
        err_set(err, errlen, "%s: %s is encrypted; a key without a passphrase is needed",
                  what, key_file);
        return -1;
    }
    if (ret != 0) {
        mbedtls_error_text(ret, reason, sizeof reason);
        err_set(err, errlen, "%s: cannot parse %s: %s", what, key_file, reason);
        return -1;
    }
    if (!mbedtls_pk_can_do(&ctx->key, MBEDTLS_PK_RSA) && !mbedtls_pk_can_do(&ctx->key, MBEDTLS_PK_ECKEY)) {
        err_set(err, errlen, "%s: %s holds a %s key; only RSA and EC keys are supported",
                  what, key_file, mbedtls_pk_get_name(&ctx->key));
        return -1;
    }
    /* mbedTLS's own text for a mismatch ("Bad input parameters", "Type
     * mismatch ... encrypt") misleads more than it helps; the key types do not. */
    if (mbedtls_pk_check_pair(&ctx->chain.pk, &ctx->key) != 0) {
        err_set(err, errlen, "%s: the %s key in %s does not match the %s certificate in %s",
                  what, mbedtls_pk_get_name(&ctx->key), key_file,
                  mbedtls_pk_get_name(&ctx->chain.pk), cert_file);
        return -1;
    }
    return 0;
}

static int seed_drbg(mbedtls_ctr_drbg_context *drbg, mbedtls_entropy_context *entropy,
                     const char *personalization, char *err, size_t errlen)
{
    int ret = mbedtls_ctr_drbg_seed(drbg, mbedtls_entropy_func, entropy,
                                    (const unsigned char *)personalization, strlen(personalization));
    if (ret != 0) {
        char reason[160];
        mbedtls_error_text(ret, reason, sizeof reason);
        err_set(err, errlen, "TLS: cannot seed the random generator: %s", reason);
        return -1;
    }
    return 0;
}

static int configure(struct tls_ctx *ctx, char *err, size_t errlen)
{
    char reason[160];
    mbedtls_ssl_config *conf = &ctx->conf;

    int ret = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        goto fail;
    mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &ctx->drbg);

    /* 2.28's TLS 1.3 is experimental and older versions lack AEAD suites. */
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(conf, aead_ciphersuites);
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_curves(conf, ecdhe_groups);

    ret = mbedtls_ssl_conf_alpn_protocols(conf, alpn_protocols);
    if (ret != 0)
        goto fail;
    ret = mbedtls_ssl_conf_own_cert(conf, &ctx->chain, &ctx->key);
    if (ret != 0)
        goto fail;

    ret = mbedtls_ssl_ticket_setup(&ctx->tickets, mbedtls_ctr_drbg_random, &ctx->ticket_drbg,
                                   MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_SECONDS);
    if (ret != 0)
        goto fail;
    mbedtls_ssl_conf_session_tickets_cb(conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                        &ctx->tickets);
    return 0;

fail:
    mbedtls_error_text(ret, reason, sizeof reason);
    err_set(err, errlen, "TLS: cannot configure: %s", reason);
    return -1;
}

struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    err_set(err, errlen, "%s", "");
    struct tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        err_set(err, errlen, "TLS: out of memory");
        return NULL;
    }
    /* Everything is initialised up front so tls_ctx_free can release a
     * half-built context. */
    mbedtls_entropy_init(&ctx->entropy);
    mbedtls_ctr_drbg_init(&ctx->drbg);
    mbedtls_ctr_drbg_init(&ctx->ticket_drbg);
    mbedtls_x509_crt_init(&ctx->chain);
    mbedtls_pk_init(&ctx->key);
    mbedtls_ssl_ticket_init(&ctx->tickets);
    mbedtls_ssl_config_init(&ctx->conf);

    if (load_chain(ctx, cert_file, err, errlen) != 0
        || load_key(ctx, cert_file, key_file, err, errlen) != 0
        || seed_drbg(&ctx->drbg, &ctx->entropy, "gtmd tls", err, errlen) != 0
        || seed_drbg(&ctx->ticket_drbg, &ctx->entropy, "gtmd tls tickets", err, errlen) != 0
        || configure(ctx, err, errlen) != 0) {
        tls_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    mbedtls_ssl_config_free(&ctx->conf);
    mbedtls_ssl_ticket_free(&ctx->tickets);
    mbedtls_pk_free(&ctx->key);
    mbedtls_x509_crt_free(&ctx->chain);
    mbedtls_ctr_drbg_free(&ctx->ticket_drbg);
    mbedtls_ctr_drbg_free(&ctx->drbg);
    mbedtls_entropy_free(&ctx->entropy);
    free(ctx);
}
