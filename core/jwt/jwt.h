/* JSON Web Tokens signed with ES256 or RS256, checked against a JWKS, with
 * mbedTLS.  The algorithm comes from the key, never from the token: a token
 * whose header names another algorithm is refused.  Claims policy (exp, aud,
 * iss, ...) is the caller's; this file only proves who signed what. */
#ifndef GTM_JWT_H
#define GTM_JWT_H

#include <jansson.h>
#include <stddef.h>

struct jwks;

/* Parses a JWKS document.  Keys it can use: EC P-256 (ES256) and RSA with a
 * modulus of 2048 bits or more (RS256); others are skipped.  NULL with a
 * one-line reason when the document is not a JWKS or holds no usable key. */
struct jwks *jwks_parse(const char *json, size_t len, char *err, size_t errlen);
void jwks_free(struct jwks *ks);
size_t jwks_count(const struct jwks *ks);
/* 1 when the set holds a key with this kid. */
int jwks_has_kid(const struct jwks *ks, const char *kid);

enum jwt_result {
    JWT_OK = 0,
    JWT_MALFORMED = -1,      /* not three base64url parts, bad JSON, bad lengths */
    JWT_NO_KID = -2,         /* the header has no kid */
    JWT_UNKNOWN_KID = -3,    /* no key with that kid */
    JWT_ALG_MISMATCH = -4,   /* header alg differs from the key's (none, HS256, RS/ES swap, ...) */
    JWT_BAD_SIGNATURE = -5,
};

/* Reads the kid from a token's header without checking anything (for
 * deciding whether to refresh the key set).  JWT_OK, JWT_MALFORMED or
 * JWT_NO_KID. */
int jwt_peek_kid(const char *token, size_t len, char *kid, size_t kidlen);

/* Verifies the signature with the key named by the header's kid.  On JWT_OK
 * *claims receives the payload object (caller owns the reference); on failure
 * why holds a short reason. */
int jwt_verify(const struct jwks *ks, const char *token, size_t len, json_t **claims, char *why,
               size_t whylen);

#endif
