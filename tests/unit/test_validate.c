/* Upstream-compatible parsers: UUIDs (pydantic's forms and messages), ints,
 * and Python-style JSON error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "http/validate.h"

#define GOOD "0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e40"

static void expect_uuid_ok(const char *in)
{
    char out[37], why[256];
    assert_int_equal(uuid_parse(in, out, why, sizeof why), 0);
    assert_string_equal(out, GOOD);
}

static void expect_uuid_err(const char *in, const char *want)
{
    char out[37], why[256];
    assert_int_equal(uuid_parse(in, out, why, sizeof why), -1);
    assert_string_equal(why, want);
}

static void test_uuid_forms(void **state)
{
    (void)state;
    expect_uuid_ok(GOOD);
    expect_uuid_ok("0B0CE2A5-0D7A-4A53-8D41-FF2BBA2B2E40");
    expect_uuid_ok("0b0ce2a50d7a4a538d41ff2bba2b2e40");
    expect_uuid_ok("{" GOOD "}");
    expect_uuid_ok("urn:uuid:" GOOD);
}

static void test_uuid_errors(void **state)
{
    (void)state;
    expect_uuid_err("", "invalid length: expected length 32 for simple format, found 0");
    expect_uuid_err("abc", "invalid length: expected length 32 for simple format, found 3");
    expect_uuid_err("hello_world",
                    "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `h` at 1");
    expect_uuid_err("urn:uuid:zz",
                    "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `z` at 10");
    expect_uuid_err("{0b0ce2a50d7a4a538d41ff2bba2b2e40}", "invalid group count: expected 5, found 1");
    expect_uuid_err("0b0ce2a5-0d7a-4a53-8d41", "invalid group count: expected 5, found 4");
    expect_uuid_err("0b0ce2a-50d7a-4a53-8d41-ff2bba2b2e40", "invalid group length in group 0: expected 8, found 7");
    expect_uuid_err("0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e400", "invalid group length in group 4: expected 12, found 13");
    expect_uuid_err("0b0ce2a5-0d7a-4a53-8d41-ff2bba2b2e4\xc3\xa9",
                    "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `\xc3\xa9` at 36");
    expect_uuid_err("\xff\xfe", "non-UTF8 input");
}

static void test_int_parse(void **state)
{
    (void)state;
    long v;
    assert_int_equal(int_parse("42", &v), INT_OK);
    assert_int_equal(v, 42);
    assert_int_equal(int_parse("  -7 ", &v), INT_OK);
    assert_int_equal(v, -7);
    assert_int_equal(int_parse("+5", &v), INT_OK);
    assert_int_equal(v, 5);
    assert_int_equal(int_parse("10.000", &v), INT_OK);
    assert_int_equal(v, 10);
    assert_int_equal(int_parse("10.5", &v), INT_BAD);
    assert_int_equal(int_parse("1e3", &v), INT_BAD);
    assert_int_equal(int_parse("", &v), INT_BAD);
    assert_int_equal(int_parse("-", &v), INT_BAD);
    assert_int_equal(int_parse(".5", &v), INT_BAD);
    assert_int_equal(int_parse("0x10", &v), INT_BAD);
    assert_int_equal(int_parse("99999999999999999999", &v), INT_TOO_BIG);
    assert_int_equal(int_parse("-99999999999999999999", &v), INT_TOO_SMALL);
    assert_int_equal(int_parse("1234567890123456789012345678901234567890123456789012345678901234567890", &v), INT_TOO_BIG);
}

static const char *py_msg(const char *text, size_t *pos)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    assert_null(v);
    return json_error_python(&e, text, strlen(text), pos);
}

static void test_json_messages(void **state)
{
    (void)state;
    size_t pos;
    assert_string_equal(py_msg("{\"a\": 1,}", &pos), "Expecting property name enclosed in double quotes");
    assert_string_equal(py_msg("{\"a\" 1}", &pos), "Expecting ':' delimiter");
    assert_string_equal(py_msg("[1 2]", &pos), "Expecting ',' delimiter");
    assert_string_equal(py_msg("{} x", &pos), "Extra data");
    assert_string_equal(py_msg("{\"a\":", &pos), "Expecting value");
    assert_int_equal(pos, 5);
    assert_string_equal(py_msg("nope", &pos), "Expecting value");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid_forms),
        cmocka_unit_test(test_uuid_errors),
        cmocka_unit_test(test_int_parse),
        cmocka_unit_test(test_json_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
