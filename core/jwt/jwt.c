/* Compact-serialised JWS tokens checked against a JWKS.  Order of checks:
 * shape and base64url of all three parts, header JSON, crit, kid, the key,
 * the header alg against the key's, signature length, the signature, and only
 * then the payload JSON, so unauthenticated payload bytes never reach the
 * JSON parser. */
#include "jwt/jwt.h"
#include "jwt/b64url.h"
#include "jwt/jwks_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>

/* Access tokens are a few hundred bytes; the bound keeps a hostile header
 * from making us decode and parse megabytes. */
#define JWT_MAX_TOKEN_LEN 16384
#define ES256_SIGNATURE_LEN 64
#define ES256_SCALAR_LEN 32
#define SHA256_LEN 32

static void set_reason(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reason(char *why, size_t whylen, const char *fmt, ...)
{
    if (why == NULL || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

enum { PART_HEADER, PART_PAYLOAD, PART_SIGNATURE, PART_COUNT };

struct token_parts {
    const char *text[PART_COUNT];
    size_t len[PART_COUNT];
    size_t signing_input_len;   /* "header.payload", starting at text[PART_HEADER] */
};

/* Exactly three dot-separated parts within the size bound; nothing decoded. */
static int split_token(const char *token, size_t len, struct token_parts *parts)
{
    if (token == NULL || len == 0 || len > JWT_MAX_TOKEN_LEN)
        return JWT_MALFORMED;
    size_t part = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && token[i] != '.')
            continue;
        if (part == PART_COUNT)
            return JWT_MALFORMED;   /* a fourth part */
        parts->text[part] = token + start;
        parts->len[part] = i - start;
        part++;
        start = i + 1;
    }
    if (part != PART_COUNT)
        return JWT_MALFORMED;
    parts->signing_input_len = parts->len[PART_HEADER] + 1 + parts->len[PART_PAYLOAD];
    return JWT_OK;
}

/* Decodes one part into a fresh buffer (caller frees it), or NULL. */
static unsigned char *decode_part(const struct token_parts *parts, int part, size_t *outlen)
{
    size_t need = b64url_decoded_len(parts->len[part]);
    if (need == (size_t)-1)
        return NULL;
    unsigned char *out = malloc(need ? need : 1);
    if (out == NULL)
        return NULL;
    if (b64url_decode(parts->text[part], parts->len[part], out, need, outlen) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* The JSON object in a decoded part, or NULL.  Duplicate members are refused:
 * two "alg"s would let different parsers see different tokens. */
static json_t *parse_object(const unsigned char *data, size_t len)
{
    json_t *value = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
    if (value != NULL && !json_is_object(value)) {
        json_decref(value);
        return NULL;
    }
    return value;
}

/* The header object of a split token (caller owns it), or NULL. */
static json_t *decode_header(const struct token_parts *parts)
{
    size_t len = 0;
    unsigned char *raw = decode_part(parts, PART_HEADER, &len);
    if (raw == NULL)
        return NULL;
    json_t *header = parse_object(raw, len);
    free(raw);
    return header;
}

/* The header's kid, or NULL when it is missing, not a string or empty. */
static const char *header_kid(const json_t *header)
{
    const char *kid = json_string_value(json_object_get(header, "kid"));
    return kid != NULL && kid[0] != '\0' ? kid : NULL;
}

int jwt_peek_kid(const char *token, size_t len, char *kid, size_t kidlen)
{
    struct token_parts parts;
    if (split_token(token, len, &parts) != JWT_OK)
        return JWT_MALFORMED;
    json_t *header = decode_header(&parts);
    if (header == NULL)
        return JWT_MALFORMED;
    int rc = JWT_OK;
    const char *found = header_kid(header);
    if (found == NULL)
        rc = JWT_NO_KID;
    else if (kid == NULL || strlen(found) >= kidlen)
        rc = JWT_MALFORMED;   /* a truncated kid would name the wrong key */
    else
        memcpy(kid, found, strlen(found) + 1);
    json_decref(header);
    return rc;
}

/* Whether 1 <= x <= n-1, the range ECDSA defines r and s in. */
static int in_scalar_range(const mbedtls_mpi *x, const mbedtls_mpi *n)
{
    return mbedtls_mpi_cmp_int(x, 1) >= 0 && mbedtls_mpi_cmp_mpi(x, n) < 0;
}

static int verify_es256(const struct jwk *key, const unsigned char hash[SHA256_LEN],
                        const unsigned char *sig)
{
    mbedtls_ecp_group group;
    mbedtls_mpi r, s;
    mbedtls_ecp_group_init(&group);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int ok = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_SECP256R1) == 0 &&
             mbedtls_mpi_read_binary(&r, sig, ES256_SCALAR_LEN) == 0 &&
             mbedtls_mpi_read_binary(&s, sig + ES256_SCALAR_LEN, ES256_SCALAR_LEN) == 0 &&
             in_scalar_range(&r, &group.N) && in_scalar_range(&s, &group.N) &&
             mbedtls_ecdsa_verify(&group, hash, SHA256_LEN, &key->u.ec_point, &r, &s) == 0;
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_group_free(&group);
    return ok;
}

static int verify_rs256(const struct jwk *key, const unsigned char hash[SHA256_LEN],
                        const unsigned char *sig)
{
    /* Not const because mbedTLS caches a Montgomery constant in the context on
     * first use (under the context's mutex, mbedTLS being built with threading
     * on Debian); the key is otherwise left as parsed. */
    mbedtls_rsa_context *rsa = (mbedtls_rsa_context *)&key->u.rsa;
    return mbedtls_rsa_pkcs1_verify(rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC, MBEDTLS_MD_SHA256,
                                    SHA256_LEN, hash, sig) == 0;
}

static size_t signature_len_for(const struct jwk *key)
{
    return key->alg == JWK_ES256 ? ES256_SIGNATURE_LEN : mbedtls_rsa_get_len(&key->u.rsa);
}

int jwt_verify(const struct jwks *ks, const char *token, size_t len, json_t **claims, char *why,
               size_t whylen)
{
    if (claims != NULL)
        *claims = NULL;
    set_reason(why, whylen, "%s", "");

    struct token_parts parts;
    if (split_token(token, len, &parts) != JWT_OK) {
        set_reason(why, whylen, "token is not three dot-separated parts within %d bytes",
                   JWT_MAX_TOKEN_LEN);
        return JWT_MALFORMED;
    }

    int rc = JWT_MALFORMED;
    json_t *header = NULL;
    unsigned char *header_raw = NULL, *payload_raw = NULL, *sig = NULL;
    size_t header_len = 0, payload_len = 0, sig_len = 0;
    header_raw = decode_part(&parts, PART_HEADER, &header_len);
    payload_raw = decode_part(&parts, PART_PAYLOAD, &payload_len);
    sig = decode_part(&parts, PART_SIGNATURE, &sig_len);
    if (header_raw == NULL || payload_raw == NULL || sig == NULL) {
        set_reason(why, whylen, "a part is not strict unpadded base64url");
        goto out;
    }
    header = parse_object(header_raw, header_len);
    if (header == NULL) {
        set_reason(why, whylen, "header is not a JSON object");
        goto out;
    }
    /* crit names extensions the verifier must understand; none is. */
    if (json_object_get(header, "crit") != NULL) {
        set_reason(why, whylen, "header has crit; no extension is understood");
        goto out;
    }
    const char *kid = header_kid(header);
    if (kid == NULL) {
        rc = JWT_NO_KID;
        set_reason(why, whylen, "header has no kid");
        goto out;
    }
    const struct jwk *key = jwks_find(ks, kid);
    if (key == NULL) {
        rc = JWT_UNKNOWN_KID;
        set_reason(why, whylen, "no key with this kid");
        goto out;
    }
    /* The key decides the algorithm; the header may only agree with it. */
    const char *alg = json_string_value(json_object_get(header, "alg"));
    if (alg == NULL || strcmp(alg, jwk_alg_name(key->alg)) != 0) {
        rc = JWT_ALG_MISMATCH;
        set_reason(why, whylen, "header alg is not %s, the key's algorithm",
                   jwk_alg_name(key->alg));
        goto out;
    }
    if (sig_len != signature_len_for(key)) {
        set_reason(why, whylen, "signature is not %zu bytes", signature_len_for(key));
        goto out;
    }

    unsigned char hash[SHA256_LEN];
    if (mbedtls_sha256_ret((const unsigned char *)parts.text[PART_HEADER],
                           parts.signing_input_len, hash, 0) != 0) {
        rc = JWT_BAD_SIGNATURE;
        set_reason(why, whylen, "signature does not verify");
        goto out;
    }
    int verified = key->alg == JWK_ES256 ? verify_es256(key, hash, sig)
                                         : verify_rs256(key, hash, sig);
    if (!verified) {
        rc = JWT_BAD_SIGNATURE;
        set_reason(why, whylen, "signature does not verify");
        goto out;
    }

    json_t *payload = parse_object(payload_raw, payload_len);
    if (payload == NULL) {
        set_reason(why, whylen, "payload is not a JSON object");
        goto out;
    }
    rc = JWT_OK;
    if (claims != NULL)
        *claims = payload;   /* the caller owns this reference now */
    else
        json_decref(payload);

out:
    json_decref(header);
    free(sig);
    free(payload_raw);
    free(header_raw);
    return rc;
}
