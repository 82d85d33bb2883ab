/* JWT/JWKS verification checked against tokens and keys minted by an
 * independent implementation (PyJWT and python3-cryptography, through
 * jwt_vectors.py), plus the strict base64url decoder.
 * Usage: test_jwt VECTORS.json */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jwt/b64url.h"
#include "jwt/jwt.h"

static const char *vectors_path;

static struct {
    json_t *doc;            /* the whole vectors file */
    struct jwks *keys;      /* parsed from doc's "jwks" */
} env;

/* ---- base64url ---- */

static void expect_decodes(const char *in, size_t inlen, const void *want, size_t wantlen)
{
    unsigned char out[128];
    size_t outlen = 12345;
    assert_int_equal(b64url_decode(in, inlen, out, sizeof out, &outlen), 0);
    assert_int_equal(outlen, wantlen);
    assert_int_equal(b64url_decoded_len(inlen), wantlen);
    if (wantlen > 0)
        assert_memory_equal(out, want, wantlen);
}

static void expect_rejected(const char *in, size_t inlen)
{
    unsigned char out[128];
    size_t outlen = 0;
    if (b64url_decode(in, inlen, out, sizeof out, &outlen) != -1)
        fail_msg("accepted %zu bytes \"%.*s\"", inlen, (int)inlen, in);
}

#define DECODES(text, bytes) expect_decodes(text, sizeof(text) - 1, bytes, sizeof(bytes) - 1)
#define REJECTED(text) expect_rejected(text, sizeof(text) - 1)

static void test_b64url_rfc4648_vectors(void **state)
{
    (void)state;
    DECODES("", "");
    DECODES("Zg", "f");
    DECODES("Zm8", "fo");
    DECODES("Zm9v", "foo");
    DECODES("Zm9vYg", "foob");
    DECODES("Zm9vYmE", "fooba");
    DECODES("Zm9vYmFy", "foobar");
    DECODES("AQ", "\x01");
    DECODES("AAAA", "\0\0\0");
}

static void test_b64url_url_alphabet(void **state)
{
    (void)state;
    DECODES("-_8", "\xfb\xff");
    DECODES("-_-_", "\xfb\xff\xbf");
    DECODES("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            "\x00\x10\x83\x10\x51\x87\x20\x92\x8b\x30\xd3\x8f\x41\x14\x93\x51"
            "\x55\x97\x61\x96\x9b\x71\xd7\x9f\x82\x18\xa3\x92\x59\xa7\xa2\x9a"
            "\xab\xb2\xdb\xaf\xc3\x1c\xb3\xd3\x5d\xb7\xe3\x9e\xbb\xf3\xdf\xbf");
}

static void test_b64url_rejects_padding_and_foreign_bytes(void **state)
{
    (void)state;
    REJECTED("Zg==");
    REJECTED("Zm8=");
    REJECTED("Zg=");
    REJECTED("=");
    REJECTED("====");
    REJECTED("Zm9v====");
    REJECTED("+_8");        /* standard alphabet */
    REJECTED("-/8");
    REJECTED("Zm9 v");
    REJECTED("Zm9v\n");
    REJECTED("Zm9v\r");
    REJECTED("Zm\0v");      /* length covers the NUL */
    REJECTED("Zm9.");
    REJECTED("Zm9\x80");
    REJECTED("Zm9\xff");
    REJECTED("Zm9\xc3\xa9");
}

static void test_b64url_rejects_impossible_lengths_and_stray_bits(void **state)
{
    (void)state;
    REJECTED("A");
    REJECTED("Zm9vY");
    REJECTED("Zm9vYmFyZ");
    /* The bits past the last whole byte must be zero, or "Zh" and "Zg" would
     * both mean "f". */
    REJECTED("Zh");
    REJECTED("Zv");
    REJECTED("AB");
    REJECTED("Zm9");
    REJECTED("Zm-");
    REJECTED("-_9");
    assert_int_equal(b64url_decoded_len(1), (size_t)-1);
    assert_int_equal(b64url_decoded_len(5), (size_t)-1);
    assert_int_equal(b64url_decoded_len(86), 64);
    assert_int_equal(b64url_decoded_len(342), 256);
}

static void test_b64url_respects_capacity(void **state)
{
    (void)state;
    unsigned char out[6];
    size_t outlen = 0;
    assert_int_equal(b64url_decode("Zm9vYmFy", 8, out, 5, &outlen), -1);
    assert_int_equal(b64url_decode("Zm9vYmFy", 8, out, 6, &outlen), 0);
    assert_int_equal(outlen, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(b64url_decode("", 0, NULL, 0, &outlen), 0);
    assert_int_equal(outlen, 0);
    /* A decode that stops halfway must not be mistaken for success. */
    assert_int_equal(b64url_decode("Zm9vYmF", 7, out, 4, &outlen), -1);
}

/* ---- vectors file ---- */

static const char *result_name(int rc)
{
    switch (rc) {
    case JWT_OK: return "JWT_OK";
    case JWT_MALFORMED: return "JWT_MALFORMED";
    case JWT_NO_KID: return "JWT_NO_KID";
    case JWT_UNKNOWN_KID: return "JWT_UNKNOWN_KID";
    case JWT_ALG_MISMATCH: return "JWT_ALG_MISMATCH";
    case JWT_BAD_SIGNATURE: return "JWT_BAD_SIGNATURE";
    default: return "(not a jwt_result)";
    }
}

static const char *doc_string(const char *name, size_t *len)
{
    const json_t *value = json_object_get(env.doc, name);
    assert_true(json_is_string(value));
    if (len != NULL)
        *len = json_string_length(value);
    return json_string_value(value);
}

static const json_t *doc_vectors(void)
{
    const json_t *vectors = json_object_get(env.doc, "vectors");
    assert_true(json_is_array(vectors));
    assert_true(json_array_size(vectors) > 50);
    return vectors;
}

static const json_t *vector_named(const char *name)
{
    const json_t *vectors = doc_vectors();
    for (size_t i = 0; i < json_array_size(vectors); i++) {
        const json_t *v = json_array_get(vectors, i);
        if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
            return v;
    }
    fail_msg("no vector named \"%s\"", name);
    return NULL;
}

/* The token keeps its full length: some vectors carry a NUL byte. */
static const char *vector_token(const json_t *v, size_t *len)
{
    const json_t *token = json_object_get(v, "token");
    assert_true(json_is_string(token));
    *len = json_string_length(token);
    return json_string_value(token);
}

static int setup_vectors(void **state)
{
    (void)state;
    json_error_t jerr;
    /* NUL bytes inside tokens are part of what is tested. */
    env.doc = json_load_file(vectors_path, JSON_ALLOW_NUL, &jerr);
    if (env.doc == NULL) {
        fprintf(stderr, "%s: %s (line %d)\n", vectors_path, jerr.text, jerr.line);
        return -1;
    }
    char err[256] = "unset";
    size_t len = 0;
    const char *text = json_string_value(json_object_get(env.doc, "jwks"));
    len = json_string_length(json_object_get(env.doc, "jwks"));
    env.keys = text != NULL ? jwks_parse(text, len, err, sizeof err) : NULL;
    if (env.keys == NULL) {
        fprintf(stderr, "jwks_parse: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown_vectors(void **state)
{
    (void)state;
    jwks_free(env.keys);
    json_decref(env.doc);
    env.keys = NULL;
    env.doc = NULL;
    return 0;
}

/* ---- JWKS ---- */

static void test_jwks_keeps_only_usable_keys(void **state)
{
    (void)state;
    const json_t *usable = json_object_get(env.doc, "jwks_usable_kids");
    const json_t *absent = json_object_get(env.doc, "jwks_absent_kids");
    assert_int_equal(json_array_size(usable), 3);
    assert_true(json_array_size(absent) >= 15);
    assert_int_equal(jwks_count(env.keys), 3);
    for (size_t i = 0; i < json_array_size(usable); i++) {
        const char *kid = json_string_value(json_array_get(usable, i));
        if (!jwks_has_kid(env.keys, kid))
            fail_msg("usable kid %s is missing", kid);
    }
    for (size_t i = 0; i < json_array_size(absent); i++) {
        const char *kid = json_string_value(json_array_get(absent, i));
        if (jwks_has_kid(env.keys, kid))
            fail_msg("junk kid %s was kept", kid);
    }
    assert_false(jwks_has_kid(env.keys, ""));
    assert_false(jwks_has_kid(env.keys, "A1B2C3D4E5F6"));
    assert_false(jwks_has_kid(NULL, "a1B2c3D4e5F6"));
    assert_int_equal(jwks_count(NULL), 0);
}

static void expect_jwks_error(const char *doc, size_t len, const char *want_in_reason)
{
    char err[256] = "unset";
    struct jwks *ks = jwks_parse(doc, len, err, sizeof err);
    if (ks != NULL) {
        jwks_free(ks);
        fail_msg("parsed: %.*s", (int)(len < 120 ? len : 120), doc);
    }
    if (strstr(err, want_in_reason) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", err, want_in_reason);
}

#define JWKS_ERROR(doc, want) expect_jwks_error(doc, sizeof(doc) - 1, want)

static void test_jwks_parse_errors(void **state)
{
    (void)state;
    JWKS_ERROR("", "not JSON");
    JWKS_ERROR("{\"keys\":[", "not JSON");
    JWKS_ERROR("keys", "not JSON");
    JWKS_ERROR("{\"keys\":[],\"keys\":[]}", "not JSON");
    JWKS_ERROR("[]", "no \"keys\" array");
    JWKS_ERROR("{}", "no \"keys\" array");
    JWKS_ERROR("{\"Keys\":[]}", "no \"keys\" array");
    JWKS_ERROR("{\"keys\":{}}", "no \"keys\" array");
    JWKS_ERROR("{\"keys\":null}", "no \"keys\" array");
    JWKS_ERROR("{\"keys\":[]}", "empty");
    JWKS_ERROR("{\"keys\":[1,\"x\",null]}", "no usable key among 3 (key 0: not an object)");
    JWKS_ERROR("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k\",\"k\":\"c2VjcmV0\"}]}",
               "no usable key among 1 (key 0: kty is not EC or RSA)");

    size_t len = 0;
    const char *junk_only = doc_string("junk_only_jwks", &len);
    expect_jwks_error(junk_only, len, "no usable key among");

    /* The same good key twice under one kid: ambiguous, so nothing is left. */
    const char *good = doc_string("jwks", NULL);
    json_t *doc = json_loads(good, 0, NULL);
    assert_non_null(doc);
    json_t *first = json_array_get(json_object_get(doc, "keys"), 0);
    json_t *twice = json_pack("{s:[O,O]}", "keys", first, first);
    char *text = json_dumps(twice, 0);
    expect_jwks_error(text, strlen(text), "a kid names more than one key");
    free(text);
    json_decref(twice);
    json_decref(doc);

    /* No reason buffer at all must still be safe. */
    assert_null(jwks_parse("{}", 2, NULL, 0));
    char tiny[4];
    assert_null(jwks_parse("{}", 2, tiny, sizeof tiny));
    assert_int_equal(strlen(tiny), 3);
    assert_null(jwks_parse(NULL, 0, tiny, sizeof tiny));
}

static void test_jwks_key_order_and_stack_shape(void **state)
{
    (void)state;
    /* Stack's documented shape: EC, alg ES256, no use. */
    static const char stack_jwks[] =
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"kid\":\"k1\","
        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
    char err[256];
    struct jwks *ks = jwks_parse(stack_jwks, sizeof stack_jwks - 1, err, sizeof err);
    assert_non_null(ks);
    assert_int_equal(jwks_count(ks), 1);
    assert_true(jwks_has_kid(ks, "k1"));
    jwks_free(ks);
    jwks_free(NULL);
}

/* ---- tokens ---- */

static void test_every_vector_verifies_as_expected(void **state)
{
    (void)state;
    const json_t *vectors = doc_vectors();
    size_t failures = 0;
    for (size_t i = 0; i < json_array_size(vectors); i++) {
        const json_t *v = json_array_get(vectors, i);
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *expect = json_string_value(json_object_get(v, "expect"));
        size_t len = 0;
        const char *token = vector_token(v, &len);

        json_t *claims = (json_t *)&claims;   /* must be overwritten either way */
        char why[128] = "unset";
        int rc = jwt_verify(env.keys, token, len, &claims, why, sizeof why);
        if (strcmp(result_name(rc), expect) != 0) {
            print_error("vector \"%s\": got %s (%s), want %s\n", name, result_name(rc), why,
                        expect);
            failures++;
        }
        if (rc == JWT_OK && strcmp(expect, "JWT_OK") != 0) {
            json_decref(claims);
        } else if (rc == JWT_OK) {
            if (why[0] != '\0') {
                print_error("vector \"%s\": why is \"%s\" on success\n", name, why);
                failures++;
            }
            if (claims == NULL || !json_equal(claims, json_object_get(v, "claims"))) {
                char *got = claims != NULL ? json_dumps(claims, JSON_SORT_KEYS) : NULL;
                print_error("vector \"%s\": claims differ: %s\n", name, got ? got : "(null)");
                free(got);
                failures++;
            }
            json_decref(claims);
        } else {
            if (claims != NULL) {
                print_error("vector \"%s\": claims set on failure\n", name);
                failures++;
            }
            if (why[0] == '\0' || strcmp(why, "unset") == 0) {
                print_error("vector \"%s\": no reason on failure\n", name);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);
}

static void test_every_vector_peeks_as_expected(void **state)
{
    (void)state;
    const json_t *vectors = doc_vectors();
    size_t failures = 0;
    for (size_t i = 0; i < json_array_size(vectors); i++) {
        const json_t *v = json_array_get(vectors, i);
        const char *name = json_string_value(json_object_get(v, "name"));
        const json_t *peek = json_object_get(v, "peek");
        const char *expect = json_string_value(json_object_get(peek, "result"));
        size_t len = 0;
        const char *token = vector_token(v, &len);

        char kid[256] = "";
        int rc = jwt_peek_kid(token, len, kid, sizeof kid);
        if (strcmp(result_name(rc), expect) != 0) {
            print_error("vector \"%s\": peek got %s, want %s\n", name, result_name(rc), expect);
            failures++;
        } else if (rc == JWT_OK) {
            const char *want_kid = json_string_value(json_object_get(peek, "kid"));
            if (strcmp(kid, want_kid) != 0) {
                print_error("vector \"%s\": peek kid \"%s\", want \"%s\"\n", name, kid, want_kid);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);
}

static void test_claims_come_back_intact(void **state)
{
    (void)state;
    size_t len = 0;
    const char *token = vector_token(vector_named("es256 unicode claims (PyJWT)"), &len);
    json_t *claims = NULL;
    char why[128];
    assert_int_equal(jwt_verify(env.keys, token, len, &claims, why, sizeof why), JWT_OK);
    assert_non_null(claims);
    assert_int_equal(claims->refcount, 1);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "usr_\xc3\xbcn\xc3\xaf");
    assert_string_equal(json_string_value(json_object_get(claims, "name")),
                        "Zo\xc3\xab \xc5\x81ukasiewicz \xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e "
                        "\xf0\x9f\x90\x8d");
    const json_t *aud = json_object_get(claims, "aud");
    assert_int_equal(json_array_size(aud), 2);
    assert_string_equal(json_string_value(json_array_get(aud, 0)), "gtmd");
    assert_string_equal(json_string_value(json_array_get(aud, 1)),
                        "\xd0\xb4\xd1\x80\xd1\x83\xd0\xb3\xd0\xbe\xd0\xb9");
    assert_string_equal(json_string_value(json_object_get(claims, "quote")),
                        "a \"quoted\" \\ back/slash\xe2\x80\xa8");
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), 4102444800LL);
    const json_t *list = json_object_get(json_object_get(claims, "nested"), "list");
    assert_int_equal(json_array_size(list), 4);
    assert_true(json_real_value(json_array_get(list, 1)) == 2.5);
    assert_true(json_is_true(json_array_get(list, 2)));
    assert_true(json_is_null(json_array_get(list, 3)));
    json_decref(claims);

    token = vector_token(vector_named("rs256 valid (PyJWT)"), &len);
    assert_int_equal(jwt_verify(env.keys, token, len, &claims, why, sizeof why), JWT_OK);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "user-1234");
    assert_string_equal(json_string_value(json_object_get(claims, "aud")), "gtmd");
    json_decref(claims);
}

static void test_verify_argument_edges(void **state)
{
    (void)state;
    size_t len = 0;
    const char *token = vector_token(vector_named("es256 valid, first EC kid (PyJWT)"), &len);

    /* The caller may not want the claims or the reason. */
    assert_int_equal(jwt_verify(env.keys, token, len, NULL, NULL, 0), JWT_OK);
    json_t *claims = NULL;
    assert_int_equal(jwt_verify(env.keys, token, len, &claims, NULL, 0), JWT_OK);
    json_decref(claims);

    /* The length is what counts, not a terminating NUL: one byte short fails. */
    assert_int_equal(jwt_verify(env.keys, token, len - 1, &claims, NULL, 0), JWT_MALFORMED);
    assert_null(claims);

    char tiny[8];
    const char *bad = vector_token(vector_named("es256 one bit flipped in S"), &len);
    assert_int_equal(jwt_verify(env.keys, bad, len, &claims, tiny, sizeof tiny), JWT_BAD_SIGNATURE);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_null(claims);

    assert_int_equal(jwt_verify(NULL, token, len, &claims, NULL, 0), JWT_UNKNOWN_KID);
    assert_int_equal(jwt_verify(env.keys, NULL, 0, &claims, NULL, 0), JWT_MALFORMED);
}

static void test_peek_kid_buffer(void **state)
{
    (void)state;
    size_t len = 0;
    const char *token = vector_token(vector_named("es256 valid, first EC kid (PyJWT)"), &len);
    static const char kid_text[] = "a1B2c3D4e5F6";
    char kid[sizeof kid_text];
    assert_int_equal(jwt_peek_kid(token, len, kid, sizeof kid), JWT_OK);
    assert_string_equal(kid, kid_text);
    /* A kid that does not fit is refused, never truncated. */
    assert_int_equal(jwt_peek_kid(token, len, kid, sizeof kid - 1), JWT_MALFORMED);
    assert_int_equal(jwt_peek_kid(token, len, NULL, 0), JWT_MALFORMED);
    /* Peeking checks nothing about the key or the signature. */
    token = vector_token(vector_named("unknown kid"), &len);
    char other[64];
    assert_int_equal(jwt_peek_kid(token, len, other, sizeof other), JWT_OK);
    assert_string_equal(other, "no-such-kid");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS.json (made by jwt_vectors.py)\n", argv[0]);
        return 2;
    }
    vectors_path = argv[1];

    const struct CMUnitTest b64url_tests[] = {
        cmocka_unit_test(test_b64url_rfc4648_vectors),
        cmocka_unit_test(test_b64url_url_alphabet),
        cmocka_unit_test(test_b64url_rejects_padding_and_foreign_bytes),
        cmocka_unit_test(test_b64url_rejects_impossible_lengths_and_stray_bits),
        cmocka_unit_test(test_b64url_respects_capacity),
    };
    const struct CMUnitTest jwt_tests[] = {
        cmocka_unit_test(test_jwks_keeps_only_usable_keys),
        cmocka_unit_test(test_jwks_parse_errors),
        cmocka_unit_test(test_jwks_key_order_and_stack_shape),
        cmocka_unit_test(test_every_vector_verifies_as_expected),
        cmocka_unit_test(test_every_vector_peeks_as_expected),
        cmocka_unit_test(test_claims_come_back_intact),
        cmocka_unit_test(test_verify_argument_edges),
        cmocka_unit_test(test_peek_kid_buffer),
    };
    int failed = cmocka_run_group_tests_name("b64url", b64url_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("jwt", jwt_tests, setup_vectors, teardown_vectors);
    return failed ? 1 : 0;
}
