/* What jwks.c hands to jwt.c: the parsed keys and the lookup by kid. */
#ifndef GTM_JWKS_INTERNAL_H
#define GTM_JWKS_INTERNAL_H

#include <stddef.h>

#include <mbedtls/ecp.h>
#include <mbedtls/rsa.h>

#include "jwt/jwt.h"

/* The one algorithm each key type is used with; the token cannot change it. */
enum jwk_alg {
    JWK_ES256,   /* EC P-256, ECDSA with SHA-256, R||S signatures */
    JWK_RS256,   /* RSA, PKCS#1 v1.5 with SHA-256 */
};

struct jwk {
    char *kid;
    enum jwk_alg alg;
    union {
        /* Only the point: the P-256 group is loaded per verification so that
         * nothing shared is written while verifying. */
        mbedtls_ecp_point ec_point;
        mbedtls_rsa_context rsa;
    } u;
};

struct jwks {
    /* Pointers, so that dropping a key never moves an mbedTLS context (the
     * RSA one holds a mutex). */
    struct jwk **keys;
    size_t count;
};

/* The key with this kid, or NULL. */
const struct jwk *jwks_find(const struct jwks *ks, const char *kid);

/* "ES256" or "RS256": the only header alg a token for this key may carry. */
const char *jwk_alg_name(enum jwk_alg alg);

#endif
