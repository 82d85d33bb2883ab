/* site_normalize_url and site_canonical_url: the upstream's rules
 * (upstream-behaviour.md §6.5) with their examples and edge cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "site/site.h"

static void expect_normal(const char *in, const char *want) {
    char out[256];
    int rc = site_normalize_url(in, out, sizeof(out));
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("normalize(\"%s\") = %d \"%s\", want \"%s\"", in, rc, out, want);
}

static void expect_not_normal(const char *in) {
    char out[256] = "junk";
    int rc = site_normalize_url(in, out, sizeof(out));
    if (rc != -1 || out[0] != '\0')
        fail_msg("normalize(\"%s\") = %d \"%s\", want -1 and \"\"", in, rc, out);
}

static void test_normalize_adds_scheme(void **state) {
    (void)state;
    expect_normal("example.com", "http://example.com");
    expect_normal("www.example.com/about", "http://www.example.com/about");
    expect_normal("example.com:8080/x", "http://example.com:8080/x");
    expect_normal("example.com:8080", "http://example.com:8080");
    expect_normal("  example.com/path?q=1#top \n", "http://example.com/path?q=1#top");
    expect_normal("127.0.0.1:8080/page", "http://127.0.0.1:8080/page");
}

static void test_normalize_keeps_web_urls(void **state) {
    (void)state;
    expect_normal("https://example.com", "https://example.com");
    expect_normal("http://example.com/a/b/", "http://example.com/a/b/");
    expect_normal("HTTPS://Example.COM/About", "HTTPS://Example.COM/About");
    expect_normal("https://example.com:8443/x?y=1", "https://example.com:8443/x?y=1");
    expect_normal("https://sub.domain.example.co.uk/", "https://sub.domain.example.co.uk/");
    /* The upstream looks for the dot anywhere in the netloc, userinfo included. */
    expect_normal("http://first.last@example.com/", "http://first.last@example.com/");
}

static void test_normalize_refuses(void **state) {
    (void)state;
    expect_not_normal("");
    expect_not_normal("   ");
    expect_not_normal("ftp://example.com/file");
    expect_not_normal("file:///etc/passwd");
    expect_not_normal("mailto:someone@example.com");
    expect_not_normal("javascript:alert(1)");
    expect_not_normal("data:text/html,hi");
    expect_not_normal("http:example.com");
    expect_not_normal("http://");
    expect_not_normal("https:///path");
    expect_not_normal("localhost");              /* no dot */
    expect_not_normal("http://localhost:8080/"); /* no dot */
    expect_not_normal("http://[::1]/");          /* no dot */
    expect_not_normal("http://intranet/");
    expect_not_normal("http://exa mple.com/");
    expect_not_normal("http://example.com/\r\nHost: evil");
    expect_not_normal("http://example.com/\x01");
}

static void test_normalize_output_size(void **state) {
    (void)state;
    char small[19];
    assert_int_equal(site_normalize_url("example.com/abcdef", small, sizeof(small)), -1); /* needs 26 */
    char exact[26];
    assert_int_equal(site_normalize_url("example.com/abcdef", exact, sizeof(exact)), 0);
    assert_string_equal(exact, "http://example.com/abcdef");
    assert_int_equal(site_normalize_url(NULL, exact, sizeof(exact)), -1);
    assert_int_equal(site_normalize_url("example.com", NULL, 10), -1);
}

static void expect_canonical(const char *in, const char *want) {
    char out[256];
    int rc = site_canonical_url(in, out, sizeof(out));
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("canonical(\"%s\") = %d \"%s\", want \"%s\"", in, rc, out, want);
}

static void test_canonical(void **state) {
    (void)state;
    /* always https, lower-cased */
    expect_canonical("http://example.com", "https://example.com/");
    expect_canonical("example.com", "https://example.com/");
    expect_canonical("  HTTPS://WWW.Example.COM/About-Us/  ", "https://www.example.com/about-us");
    /* default ports of either scheme dropped, others kept */
    expect_canonical("http://example.com:80/a", "https://example.com/a");
    expect_canonical("https://example.com:443", "https://example.com/");
    expect_canonical("http://example.com:443/x", "https://example.com/x");
    expect_canonical("https://example.com:8443/x/", "https://example.com:8443/x");
    expect_canonical("example.com:8080", "https://example.com:8080/");
    expect_canonical("https://example.com:8080/", "https://example.com:8080/");
    /* trailing slashes off non-root paths; "/" for an empty path */
    expect_canonical("https://example.com/", "https://example.com/");
    expect_canonical("https://example.com/a/", "https://example.com/a");
    expect_canonical("https://example.com/a//", "https://example.com/a");
    expect_canonical("https://example.com//", "https://example.com/");
    expect_canonical("https://example.com/a/b", "https://example.com/a/b");
    /* query and fragment dropped */
    expect_canonical("https://example.com/a?b=c#d", "https://example.com/a");
    expect_canonical("https://example.com?x=1", "https://example.com/");
    expect_canonical("https://example.com/#frag", "https://example.com/");
    expect_canonical("https://example.com/a/?utm_source=x", "https://example.com/a");
}

static void test_canonical_same_key(void **state) {
    (void)state;
    const char *variants[] = {"http://example.com", "https://example.com/", "HTTP://EXAMPLE.COM:80/",
                              "example.com/?ref=1", "https://example.com:443/#x"};
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
        expect_canonical(variants[i], "https://example.com/");
}

static void test_canonical_refuses(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(site_canonical_url("ftp://example.com/", out, sizeof(out)), -1);
    assert_int_equal(site_canonical_url("", out, sizeof(out)), -1);
    assert_int_equal(site_canonical_url("https:///x", out, sizeof(out)), -1);
    assert_int_equal(site_canonical_url("/just/a/path", out, sizeof(out)), -1);
    char small[20];
    assert_int_equal(site_canonical_url("https://example.com/abc", small, sizeof(small)), -1);
    char exact[24];
    assert_int_equal(site_canonical_url("https://example.com/abc", exact, sizeof(exact)), 0);
    assert_string_equal(exact, "https://example.com/abc");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_adds_scheme),
        cmocka_unit_test(test_normalize_keeps_web_urls),
        cmocka_unit_test(test_normalize_refuses),
        cmocka_unit_test(test_normalize_output_size),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_canonical_same_key),
        cmocka_unit_test(test_canonical_refuses),
    };
    return cmocka_run_group_tests_name("site_url", tests, NULL, NULL);
}
