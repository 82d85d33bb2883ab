/* libFuzzer target: JWT and JWKS parsing and verification (core/jwt).
 * Input: a mode byte, then text.
 *   mode % 3 == 0   a JWKS document: parsed, then a token signed by a key of
 *                   the fixed set (jwt_jwks.json) checked against it
 *   mode % 3 == 1   a token, checked against the fixed set: public keys whose
 *                   signed tokens are in the seed corpus (minted once by
 *                   tests/unit/jwt_vectors.py, PyJWT)
 *   mode % 3 == 2   a JWKS and a token, split where the two bytes after the
 *                   mode byte say
 * What must hold: a refused key set says why; claims come back exactly when
 * the verdict is JWT_OK, as an object; the verdict is one of the six; a
 * verified token's kid is one peek reads and the set holds. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "jwt/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jwks *fixed;
/* es256 valid, first EC kid (PyJWT), from the same run as jwt_jwks.json */
static char *fixed_token;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = FUZZ_SOURCE_ROOT "/tests/fuzz/jwt_jwks.json";
    json_error_t e;
    json_t *doc = json_load_file(path, 0, &e);
    const char *keys = json_string_value(json_object_get(doc, "jwks"));
    const char *token = json_string_value(json_object_get(doc, "token"));
    char err[256];
    fixed = keys ? jwks_parse(keys, strlen(keys), err, sizeof err) : NULL;
    if (!fixed || !token) {
        fprintf(stderr, "fuzz: %s: no usable jwks and token\n", path);
        exit(1);
    }
    fixed_token = strdup(token);
    json_t *claims = NULL;
    char why[128];
    if (jwt_verify(fixed, fixed_token, strlen(fixed_token), &claims, why, sizeof why) != JWT_OK) {
        fprintf(stderr, "fuzz: %s: its token does not verify: %s\n", path, why);
        exit(1);
    }
    json_decref(claims);
    json_decref(doc);
    return 0;
}

static void fail(const char *why, const char *keys, size_t klen, const char *token, size_t tlen)
{
    fprintf(stderr, "\n==fuzz== %s\n==fuzz== jwks: %.*s\n==fuzz== token: %.*s\n", why,
            (int)(klen > 2000 ? 2000 : klen), keys ? keys : "-", (int)(tlen > 2000 ? 2000 : tlen),
            token ? token : "-");
    abort();
}

static void verify(const struct jwks *ks, const char *token, size_t len, const char *keys, size_t klen)
{
    char kid[256];
    int peek = jwt_peek_kid(token, len, kid, sizeof kid);
    if (peek != JWT_OK && peek != JWT_MALFORMED && peek != JWT_NO_KID) {
        fail("jwt_peek_kid gave another verdict", keys, klen, token, len);
    }
    json_t *claims = (json_t *)1;   /* must be overwritten or left alone, never used when not OK */
    json_t *sentinel = claims;
    char why[128];
    memset(why, 'x', sizeof why);
    int rc = jwt_verify(ks, token, len, &claims, why, sizeof why);
    if (rc < JWT_BAD_SIGNATURE || rc > JWT_OK) {
        fail("jwt_verify gave an unknown verdict", keys, klen, token, len);
    }
    if (rc == JWT_OK) {
        if (claims == sentinel || !json_is_object(claims)) {
            fail("JWT_OK without a claims object", keys, klen, token, len);
        }
        if (peek != JWT_OK || !jwks_has_kid(ks, kid)) {
            fail("a verified token whose kid peek does not read or the set lacks", keys, klen, token, len);
        }
        json_decref(claims);
    } else {
        if (claims != sentinel && claims != NULL) {
            fail("claims handed out for a refused token", keys, klen, token, len);
        }
        if (!memchr(why, '\0', sizeof why)) {
            fail("a refusal reason that is not a string", keys, klen, token, len);
        }
    }
}

static struct jwks *parse_keys(const char *keys, size_t len)
{
    char err[256];
    memset(err, 'x', sizeof err);
    struct jwks *ks = jwks_parse(keys, len, err, sizeof err);
    if (!ks) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) {
            fail("a refused key set without a reason", keys, len, NULL, 0);
        }
        return NULL;
    }
    if (jwks_count(ks) == 0) {
        fail("a key set with no key was accepted", keys, len, NULL, 0);
    }
    jwks_has_kid(ks, "a1B2c3D4e5F6");
    jwks_has_kid(ks, "");
    return ks;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0] % 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 1) {
        verify(fixed, text, len, NULL, 0);
        return 0;
    }
    size_t split = len;
    if (mode == 2 && !fuzz_split(&text, &len, &split)) {
        return 0;
    }
    struct jwks *ks = parse_keys(text, split);
    if (ks) {
        if (mode == 0) {
            verify(ks, fixed_token, strlen(fixed_token), text, split);
        } else {
            verify(ks, text + split, len - split, text, split);
        }
        jwks_free(ks);
    }
    return 0;
}
