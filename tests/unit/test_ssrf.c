/* The SSRF guard's address classes (IPv4, IPv6, the IPv6 forms that carry
 * an IPv4 address), GTM_ALLOW_PRIVATE_FETCH, the GTM_FETCH_ALLOW list, and
 * site_config_from_env's checks of every variable. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "site/site.h"

/* 1 when cfg lets addr:port through; addr is an IPv4 or IPv6 literal. */
static int allowed(const struct site_config *cfg, const char *addr, unsigned port) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
    } else {
        fail_msg("bad literal in the test: %s", addr);
    }
    return site_address_allowed(cfg, (struct sockaddr *)&ss);
}

static void expect_each(const struct site_config *cfg, const char *const *addrs, int want) {
    for (size_t i = 0; addrs[i]; i++) {
        int got = allowed(cfg, addrs[i], 80);
        if (got != want)
            fail_msg("%s: allowed = %d, want %d", addrs[i], got, want);
    }
}

static const char *const forbidden_v4[] = {
    "0.0.0.0", "0.1.2.3", "0.255.255.255",              /* 0/8 */
    "10.0.0.1", "10.255.255.1", "10.255.255.255",       /* 10/8 */
    "100.64.0.0", "100.100.100.100", "100.127.255.255", /* 100.64/10 */
    "127.0.0.1", "127.0.1.1", "127.255.255.254",        /* 127/8 */
    "169.254.169.254", "169.254.0.1", "169.254.255.255", /* 169.254/16, metadata */
    "172.16.0.1", "172.20.1.1", "172.31.255.255",       /* 172.16/12 */
    "192.0.0.1", "192.0.0.170", "192.0.0.255",          /* 192.0.0/24 */
    "192.168.0.1", "192.168.255.255",                   /* 192.168/16 */
    "198.18.0.1", "198.19.255.255",                     /* 198.18/15 */
    "224.0.0.1", "239.255.255.250",                     /* 224/4 */
    "240.0.0.1", "250.1.2.3", "255.255.255.255",        /* 240/4 and broadcast */
    NULL,
};

static const char *const public_v4[] = {
    "1.1.1.1", "8.8.8.8", "93.184.216.34", "9.255.255.255", "11.0.0.1", "100.63.255.255", "100.128.0.0",
    "126.255.255.255", "128.0.0.1", "169.253.255.255", "169.255.0.1", "172.15.255.255", "172.32.0.0",
    "192.0.1.1", "192.0.2.1", "192.167.255.255", "192.169.0.1", "198.17.255.255", "198.20.0.0",
    "223.255.255.255", NULL,
};

static const char *const forbidden_v6[] = {
    "::", "::1",                                             /* unspecified, loopback */
    "fe80::1", "fe80::1234:5678:9abc:def0", "febf:ffff::1",  /* fe80::/10 */
    "fec0::1",                                               /* old site-local */
    "fc00::1", "fd12:3456:789a::1", "fdff:ffff::ffff",       /* fc00::/7 */
    "ff02::1", "ff05::2", "ff0e::1", "ffff::1",              /* ff00::/8 */
    "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::ffff:192.168.1.1",
    "::ffff:0.0.0.0", "::ffff:224.0.0.1", "::ffff:100.64.0.1", /* IPv4-mapped */
    "::127.0.0.1", "::10.0.0.1", "::169.254.169.254", "::0.0.0.2", /* IPv4-compatible */
    "64:ff9b::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:101",
    "64:ff9b::10.0.0.1",                                     /* NAT64 of forbidden IPv4 */
    NULL,
};

static const char *const public_v6[] = {
    "2001:4860:4860::8888", "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
    "::8.8.8.8", "64:ff9b::808:808", "64:ff9b::93.184.216.34", "fe00::1", "fbff::1", "2001:db8::1", NULL,
};

static void test_ipv4_classes(void **state) {
    (void)state;
    struct site_config cfg = {0};
    expect_each(&cfg, forbidden_v4, 0);
    expect_each(&cfg, public_v4, 1);
}

static void test_ipv6_classes(void **state) {
    (void)state;
    struct site_config cfg = {0};
    expect_each(&cfg, forbidden_v6, 0);
    expect_each(&cfg, public_v6, 1);
}

static void test_allow_private(void **state) {
    (void)state;
    struct site_config cfg = {.allow_private = true};
    expect_each(&cfg, forbidden_v4, 1);
    expect_each(&cfg, forbidden_v6, 1);
    expect_each(&cfg, public_v4, 1);
}

static void test_other_families(void **state) {
    (void)state;
    struct site_config cfg = {.allow_private = true};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(site_address_allowed(&cfg, (struct sockaddr *)&un), 0);
    assert_int_equal(site_address_allowed(NULL, (struct sockaddr *)&un), 0);
    assert_int_equal(site_address_allowed(&cfg, NULL), 0);
}

static void test_allow_list(void **state) {
    (void)state;
    struct site_config cfg = {0};
    snprintf(cfg.fetch_allow, sizeof(cfg.fetch_allow), "127.0.0.1:8080, localhost:9000 ,[::1]:7000,10.1.2.3:443");
    /* exact address and port */
    assert_int_equal(allowed(&cfg, "127.0.0.1", 8080), 1);
    assert_int_equal(allowed(&cfg, "::ffff:127.0.0.1", 8080), 1); /* the same IPv4 address */
    assert_int_equal(allowed(&cfg, "127.0.0.1", 8081), 0);
    assert_int_equal(allowed(&cfg, "127.0.0.2", 8080), 0);
    assert_int_equal(allowed(&cfg, "::1", 8080), 0);
    /* localhost is both loopback addresses */
    assert_int_equal(allowed(&cfg, "127.0.0.1", 9000), 1);
    assert_int_equal(allowed(&cfg, "::1", 9000), 1);
    assert_int_equal(allowed(&cfg, "127.0.0.2", 9000), 0);
    /* bracketed IPv6 */
    assert_int_equal(allowed(&cfg, "::1", 7000), 1);
    assert_int_equal(allowed(&cfg, "127.0.0.1", 7000), 0);
    assert_int_equal(allowed(&cfg, "10.1.2.3", 443), 1);
    assert_int_equal(allowed(&cfg, "10.1.2.3", 80), 0);
    /* the list adds to the public internet, it does not replace it */
    assert_int_equal(allowed(&cfg, "8.8.8.8", 53), 1);
    assert_int_equal(allowed(&cfg, "169.254.169.254", 80), 0);
}

/* ---- site_config_from_env --------------------------------------------------- */

static const char *const site_vars[] = {"FIRECRAWL_API_KEY", "FIRECRAWL_BASE_URL", "MAX_CONTENT_LENGTH",
                                        "WEB_CACHE_TTL_HOURS", "GTM_ALLOW_PRIVATE_FETCH", "GTM_FETCH_ALLOW", NULL};

static int clear_env(void **state) {
    (void)state;
    for (size_t i = 0; site_vars[i]; i++)
        unsetenv(site_vars[i]);
    return 0;
}

static void test_config_defaults(void **state) {
    (void)state;
    struct site_config cfg;
    char err[256] = "";
    assert_int_equal(site_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.firecrawl_key, "");
    assert_string_equal(cfg.firecrawl_base, "https://api.firecrawl.dev");
    assert_int_equal(cfg.max_chars, 20000);
    assert_int_equal(cfg.cache_ttl_hours, 24);
    assert_false(cfg.allow_private);
    assert_string_equal(cfg.fetch_allow, "");
    assert_int_equal(cfg.max_bytes, 5 * 1024 * 1024);
    assert_int_equal(cfg.max_redirects, 5);
    /* empty counts as unset */
    setenv("MAX_CONTENT_LENGTH", "", 1);
    assert_int_equal(site_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.max_chars, 20000);
}

static void test_config_values(void **state) {
    (void)state;
    setenv("FIRECRAWL_API_KEY", "fc-abc123", 1);
    setenv("FIRECRAWL_BASE_URL", "http://127.0.0.1:3002//", 1);
    setenv("MAX_CONTENT_LENGTH", "5000", 1);
    setenv("WEB_CACHE_TTL_HOURS", "0", 1);
    setenv("GTM_ALLOW_PRIVATE_FETCH", "1", 1);
    setenv("GTM_FETCH_ALLOW", "localhost:8080,[::1]:9000", 1);
    struct site_config cfg;
    char err[256] = "";
    assert_int_equal(site_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.firecrawl_key, "fc-abc123");
    assert_string_equal(cfg.firecrawl_base, "http://127.0.0.1:3002");
    assert_int_equal(cfg.max_chars, 5000);
    assert_int_equal(cfg.cache_ttl_hours, 0);
    assert_true(cfg.allow_private);
    assert_string_equal(cfg.fetch_allow, "localhost:8080,[::1]:9000");
}

static void expect_bad(const char *var, const char *value) {
    clear_env(NULL);
    setenv(var, value, 1);
    struct site_config cfg;
    char err[256] = "";
    int rc = site_config_from_env(&cfg, err, sizeof(err));
    if (rc != -1 || strncmp(err, var, strlen(var)) != 0 || strchr(err, '\n'))
        fail_msg("%s=\"%s\": rc %d, err \"%s\" (want -1 and one line naming the variable)", var, value, rc, err);
}

static void test_config_bad_values(void **state) {
    (void)state;
    expect_bad("MAX_CONTENT_LENGTH", "abc");
    expect_bad("MAX_CONTENT_LENGTH", "0");
    expect_bad("MAX_CONTENT_LENGTH", "-5");
    expect_bad("MAX_CONTENT_LENGTH", "12k");
    expect_bad("MAX_CONTENT_LENGTH", "99999999999999999999");
    expect_bad("WEB_CACHE_TTL_HOURS", "-1");
    expect_bad("WEB_CACHE_TTL_HOURS", "1.5");
    expect_bad("WEB_CACHE_TTL_HOURS", "forever");
    expect_bad("GTM_ALLOW_PRIVATE_FETCH", "yes");
    expect_bad("GTM_ALLOW_PRIVATE_FETCH", "2");
    expect_bad("GTM_FETCH_ALLOW", "127.0.0.1");
    expect_bad("GTM_FETCH_ALLOW", "example.com:80");
    expect_bad("GTM_FETCH_ALLOW", "127.0.0.1:0");
    expect_bad("GTM_FETCH_ALLOW", "127.0.0.1:70000");
    expect_bad("GTM_FETCH_ALLOW", "127.0.0.1:80x");
    expect_bad("GTM_FETCH_ALLOW", "[::1]8080");
    expect_bad("GTM_FETCH_ALLOW", "::1:8080");
    expect_bad("GTM_FETCH_ALLOW", "localhost:8080,nonsense");
    expect_bad("FIRECRAWL_BASE_URL", "ftp://firecrawl.example");
    expect_bad("FIRECRAWL_BASE_URL", "api.firecrawl.dev");
    expect_bad("FIRECRAWL_API_KEY", "fc-abc\r\nX-Injected: 1");
    expect_bad("FIRECRAWL_API_KEY", "fc abc");
    clear_env(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_classes),
        cmocka_unit_test(test_ipv6_classes),
        cmocka_unit_test(test_allow_private),
        cmocka_unit_test(test_other_families),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test_setup(test_config_defaults, clear_env),
        cmocka_unit_test_setup(test_config_values, clear_env),
        cmocka_unit_test_setup(test_config_bad_values, clear_env),
    };
    return cmocka_run_group_tests_name("ssrf", tests, NULL, NULL);
}
