/* The host table's token and crypto helpers: thin wrappers, so modules need
 * no crypto library of their own. */
#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include <mbedtls/sha256.h>

#include "jwt/jwt.h"
#include "modules/host_internal.h"

/* struct gtm_jwks is the ABI's name for struct jwks */
struct gtm_jwks *host_jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
    return (struct gtm_jwks *)jwks_parse(json, len, err, errlen);
}

void host_jwks_free(struct gtm_jwks *ks)
{
    jwks_free((struct jwks *)ks);
}

int host_jwks_has_kid(const struct gtm_jwks *ks, const char *kid)
{
    return jwks_has_kid((const struct jwks *)ks, kid);
}

int host_jwt_peek_kid(const char *token, size_t len, char *kid, size_t kidlen)
{
    int rc = jwt_peek_kid(token, len, kid, kidlen);
    return rc == JWT_OK ? 0 : rc == JWT_NO_KID ? -2 : -1;
}

int host_jwt_verify(const struct gtm_jwks *ks, const char *token, size_t len, json_t **claims, char *why,
                    size_t whylen)
{
    switch (jwt_verify((const struct jwks *)ks, token, len, claims, why, whylen)) {
    case JWT_OK: return 0;
    case JWT_NO_KID: return -2;
    case JWT_UNKNOWN_KID: return -3;
    case JWT_ALG_MISMATCH: return -4;
    case JWT_BAD_SIGNATURE: return -5;
    default: return -1;
    }
}

int host_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return GTM_EIO;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

void host_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char h[32];
    mbedtls_sha256_ret(data, len, h, 0);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[64] = '\0';
}

int64_t host_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
