/* JWKS documents into mbedTLS public keys.  A key that is not plainly an
 * ES256 or RS256 signing key is skipped rather than guessed at: the set only
 * ever grants what it states unambiguously. */
#include "util/err.h"
#include "jwt/jwt.h"
#include "jwt/b64url.h"
#include "jwt/jwks_internal.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define EC_P256_COORD_LEN 32
#define RSA_MIN_MODULUS_BITS 2048
/* mbedTLS's own ceiling for RSA (MBEDTLS_MPI_MAX_BITS in the default
 * configuration); also keeps a hostile document from costing much. */
#define RSA_MAX_MODULUS_BYTES 1024
/* Small exponents below 3 are broken, even ones are not RSA, and anything
 * past 31 bits is not something a real key uses. */
#define RSA_MIN_EXPONENT 3u
#define RSA_MAX_EXPONENT 0x7fffffffu

const char *jwk_alg_name(enum jwk_alg alg)
{
    return alg == JWK_ES256 ? "ES256" : "RS256";
}

static void jwk_free(struct jwk *key)
{
    if (key == NULL)
        return;
    if (key->alg == JWK_ES256)
        mbedtls_ecp_point_free(&key->u.ec_point);
    else
        mbedtls_rsa_free(&key->u.rsa);
    free(key->kid);
    free(key);
}

/* Decodes the base64url string member `name` into out; -1 when it is missing,
 * not a string, not strict base64url or longer than outcap bytes. */
static int decode_member(const json_t *jwk, const char *name, unsigned char *out, size_t outcap,
                         size_t *outlen)
{
    const json_t *member = json_object_get(jwk, name);
    if (!json_is_string(member))
        return -1;
    return b64url_decode(json_string_value(member), json_string_length(member), out, outcap,
                         outlen);
}

static int load_ec_p256(const json_t *jwk, struct jwk *key, char *why, size_t whylen)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (crv == NULL || strcmp(crv, "P-256") != 0) {
        err_set(why, whylen, "EC curve is not P-256");
        return -1;
    }
    /* SEC1 uncompressed form, which is what mbedTLS reads. */
    unsigned char point[1 + 2 * EC_P256_COORD_LEN];
    size_t xlen = 0, ylen = 0;
    point[0] = 0x04;
    if (decode_member(jwk, "x", point + 1, EC_P256_COORD_LEN, &xlen) != 0 ||
        decode_member(jwk, "y", point + 1 + EC_P256_COORD_LEN, EC_P256_COORD_LEN, &ylen) != 0 ||
        xlen != EC_P256_COORD_LEN || ylen != EC_P256_COORD_LEN) {
        err_set(why, whylen, "EC x or y is not 32 bytes of base64url");
        return -1;
    }

    mbedtls_ecp_group group;
    mbedtls_ecp_group_init(&group);
    int rc = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_SECP256R1);
    if (rc == 0)
        rc = mbedtls_ecp_point_read_binary(&group, &key->u.ec_point, point, sizeof point);
    /* Reading the point does not check the curve equation; a point off the
     * curve is never a real key, so it is refused rather than verified against. */
    if (rc == 0)
        rc = mbedtls_ecp_check_pubkey(&group, &key->u.ec_point);
    mbedtls_ecp_group_free(&group);
    if (rc != 0) {
        err_set(why, whylen, "EC point is not on P-256");
        return -1;
    }
    return 0;
}

static int load_rsa(const json_t *jwk, struct jwk *key, char *why, size_t whylen)
{
    unsigned char modulus[RSA_MAX_MODULUS_BYTES];
    unsigned char exponent[4];
    size_t modulus_len = 0, exponent_len = 0;
    if (decode_member(jwk, "n", modulus, sizeof modulus, &modulus_len) != 0 || modulus_len == 0) {
        err_set(why, whylen, "RSA n is not base64url of at most %d bytes",
                  RSA_MAX_MODULUS_BYTES);
        return -1;
    }
    if (decode_member(jwk, "e", exponent, sizeof exponent, &exponent_len) != 0 ||
        exponent_len == 0) {
        err_set(why, whylen, "RSA e is not base64url of at most 4 bytes");
        return -1;
    }
    uint32_t e = 0;
    for (size_t i = 0; i < exponent_len; i++)
        e = (e << 8) | exponent[i];
    if (e < RSA_MIN_EXPONENT || e > RSA_MAX_EXPONENT || e % 2 == 0) {
        err_set(why, whylen, "RSA exponent %u is not an odd number in 3..2^31", (unsigned)e);
        return -1;
    }

    if (mbedtls_rsa_import_raw(&key->u.rsa, modulus, modulus_len, NULL, 0, NULL, 0, NULL, 0,
                               exponent, exponent_len) != 0 ||
        mbedtls_rsa_complete(&key->u.rsa) != 0 || mbedtls_rsa_check_pubkey(&key->u.rsa) != 0) {
        err_set(why, whylen, "RSA public key is not valid");
        return -1;
    }
    size_t bits = mbedtls_mpi_bitlen(&key->u.rsa.N);
    if (bits < RSA_MIN_MODULUS_BITS) {
        err_set(why, whylen, "RSA modulus has %zu bits, fewer than %d", bits,
                  RSA_MIN_MODULUS_BITS);
        return -1;
    }
    return 0;
}

/* A usable key from one JWKS entry, or NULL with the reason in why.  The
 * caller owns the key. */
static struct jwk *jwk_load(const json_t *jwk, char *why, size_t whylen)
{
    if (!json_is_object(jwk)) {
        err_set(why, whylen, "not an object");
        return NULL;
    }
    const char *kid = json_string_value(json_object_get(jwk, "kid"));
    if (kid == NULL || kid[0] == '\0') {
        err_set(why, whylen, "no kid");
        return NULL;
    }
    const json_t *use = json_object_get(jwk, "use");
    if (use != NULL && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0)) {
        err_set(why, whylen, "use is not \"sig\"");
        return NULL;
    }
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    enum jwk_alg alg;
    if (kty != NULL && strcmp(kty, "EC") == 0) {
        alg = JWK_ES256;
    } else if (kty != NULL && strcmp(kty, "RSA") == 0) {
        alg = JWK_RS256;
    } else {
        err_set(why, whylen, "kty is not EC or RSA");
        return NULL;
    }
    const json_t *stated_alg = json_object_get(jwk, "alg");
    if (stated_alg != NULL && !(json_is_string(stated_alg) &&
                                strcmp(json_string_value(stated_alg), jwk_alg_name(alg)) == 0)) {
        err_set(why, whylen, "alg is not %s, the only one used with kty %s", jwk_alg_name(alg),
                  kty);
        return NULL;
    }

    struct jwk *key = calloc(1, sizeof *key);
    if (key == NULL) {
        err_set(why, whylen, "out of memory");
        return NULL;
    }
    key->alg = alg;
    int rc;
    if (alg == JWK_ES256) {
        mbedtls_ecp_point_init(&key->u.ec_point);
        rc = load_ec_p256(jwk, key, why, whylen);
    } else {
        /* The hash id only matters for PSS; v1.5 takes it per call. */
        mbedtls_rsa_init(&key->u.rsa, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_SHA256);
        rc = load_rsa(jwk, key, why, whylen);
    }
    if (rc == 0) {
        key->kid = strdup(kid);
        if (key->kid == NULL) {
            err_set(why, whylen, "out of memory");
            rc = -1;
        }
    }
    if (rc != 0) {
        jwk_free(key);
        return NULL;
    }
    return key;
}

/* A kid that names two keys cannot say which one signed, so neither is kept.
 * Returns how many keys were dropped, or -1 when memory ran out. */
static long drop_ambiguous_kids(struct jwks *ks)
{
    bool *ambiguous = calloc(ks->count ? ks->count : 1, sizeof *ambiguous);
    if (ambiguous == NULL)
        return -1;
    for (size_t i = 0; i < ks->count; i++)
        for (size_t j = i + 1; j < ks->count; j++)
            if (strcmp(ks->keys[i]->kid, ks->keys[j]->kid) == 0)
                ambiguous[i] = ambiguous[j] = true;
    size_t kept = 0;
    long dropped = 0;
    for (size_t i = 0; i < ks->count; i++) {
        if (ambiguous[i]) {
            jwk_free(ks->keys[i]);
            dropped++;
        } else {
            ks->keys[kept++] = ks->keys[i];
        }
    }
    ks->count = kept;
    free(ambiguous);
    return dropped;
}

struct jwks *jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
    err_set(err, errlen, "%s", "");
    if (json == NULL) {
        err_set(err, errlen, "JWKS: no document");
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        err_set(err, errlen, "JWKS is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                  jerr.column);
        return NULL;
    }
    const json_t *entries = json_object_get(doc, "keys");   /* NULL unless doc is an object */
    if (!json_is_array(entries)) {
        err_set(err, errlen, "not a JWKS: no \"keys\" array");
        json_decref(doc);
        return NULL;
    }
    size_t entry_count = json_array_size(entries);
    if (entry_count == 0) {
        err_set(err, errlen, "JWKS \"keys\" is empty");
        json_decref(doc);
        return NULL;
    }

    struct jwks *ks = calloc(1, sizeof *ks);
    if (ks != NULL)
        ks->keys = calloc(entry_count, sizeof *ks->keys);
    if (ks == NULL || ks->keys == NULL) {
        err_set(err, errlen, "JWKS: out of memory");
        free(ks);
        json_decref(doc);
        return NULL;
    }

    char first_skip[160] = "";
    for (size_t i = 0; i < entry_count; i++) {
        char why[128];
        struct jwk *key = jwk_load(json_array_get(entries, i), why, sizeof why);
        if (key != NULL)
            ks->keys[ks->count++] = key;   /* the set owns it now */
        else if (first_skip[0] == '\0')
            snprintf(first_skip, sizeof first_skip, "key %zu: %s", i, why);
    }
    json_decref(doc);
    long dropped = drop_ambiguous_kids(ks);
    if (dropped < 0) {
        err_set(err, errlen, "JWKS: out of memory");
        jwks_free(ks);
        return NULL;
    }
    if (dropped > 0 && first_skip[0] == '\0')
        snprintf(first_skip, sizeof first_skip, "a kid names more than one key");

    if (ks->count == 0) {
        err_set(err, errlen, "JWKS holds no usable key among %zu (%s)", entry_count, first_skip);
        jwks_free(ks);
        return NULL;
    }
    return ks;
}

void jwks_free(struct jwks *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->count; i++)
        jwk_free(ks->keys[i]);
    free(ks->keys);
    free(ks);
}

size_t jwks_count(const struct jwks *ks)
{
    return ks != NULL ? ks->count : 0;
}

const struct jwk *jwks_find(const struct jwks *ks, const char *kid)
{
    if (ks == NULL || kid == NULL)
        return NULL;
    for (size_t i = 0; i < ks->count; i++)
        if (strcmp(ks->keys[i]->kid, kid) == 0)
            return ks->keys[i];
    return NULL;
}

int jwks_has_kid(const struct jwks *ks, const char *kid)
{
    return jwks_find(ks, kid) != NULL;
}
