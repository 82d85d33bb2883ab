/* Configuration parsing: every bad value is refused with the variable named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "config.h"

static void clear_env(void)
{
    const char *vars[] = {"GTM_LISTEN", "GTM_TLS_LISTEN", "GTM_TLS_CERT", "GTM_TLS_KEY", "GTM_WORKERS",
                          "GTM_MODULE_DIR", "GTM_MAX_BODY", "GTM_MAX_CONNECTIONS", "GTM_SHUTDOWN_TIMEOUT",
                          "GTM_HEADER_TIMEOUT", "GTM_BODY_TIMEOUT", "GTM_IDLE_TIMEOUT", "GTM_LOG_LEVEL",
                          "CORS_ORIGINS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        unsetenv(vars[i]);
    }
}

static void test_defaults(void **state)
{
    (void)state;
    clear_env();
    struct config c;
    char err[256];
    assert_int_equal(config_load(&c, err, sizeof err), 0);
    assert_string_equal(c.listen.text, "127.0.0.1:8000");
    assert_false(c.tls_listen.set);
    assert_int_equal(c.max_body, 1024 * 1024);
    assert_int_equal(c.max_connections, 16384);
    assert_true(c.shutdown_timeout == 10.0);
    assert_int_equal(c.n_cors_origins, 2);
    assert_string_equal(c.cors_origins[0], "http://localhost:5175");
    assert_string_equal(c.cors_origins[1], "https://blossomer-gtm-app.onrender.com");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);   /* one worker per CPU */
    assert_int_equal(c.workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    assert_int_equal(c.listen.fd, -1);
    assert_int_equal(c.tls_listen.fd, -1);
    config_free(&c);
}

static void expect_refused(const char *var, const char *value, const char *needle)
{
    clear_env();
    setenv(var, value, 1);
    struct config c;
    char err[256];
    assert_int_equal(config_load(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, needle));
    assert_null(strchr(err, '\n'));
    config_free(&c);
}

static void test_bad_values_name_the_variable(void **state)
{
    (void)state;
    expect_refused("GTM_LISTEN", "nonsense", "GTM_LISTEN");
    expect_refused("GTM_LISTEN", "127.0.0.1:99999", "GTM_LISTEN");
    expect_refused("GTM_LISTEN", "999.1.1.1:80", "GTM_LISTEN");
    expect_refused("GTM_MAX_BODY", "abc", "GTM_MAX_BODY");
    expect_refused("GTM_MAX_BODY", "-1", "GTM_MAX_BODY");
    expect_refused("GTM_MAX_BODY", "0", "GTM_MAX_BODY");
    expect_refused("GTM_WORKERS", "0", "GTM_WORKERS");
    expect_refused("GTM_MAX_CONNECTIONS", "lots", "GTM_MAX_CONNECTIONS");
    expect_refused("GTM_SHUTDOWN_TIMEOUT", "-3", "GTM_SHUTDOWN_TIMEOUT");
    expect_refused("GTM_IDLE_TIMEOUT", "1s", "GTM_IDLE_TIMEOUT");
    expect_refused("GTM_LOG_LEVEL", "loud", "GTM_LOG_LEVEL");
    expect_refused("CORS_ORIGINS", "localhost:5175", "CORS_ORIGINS");
    expect_refused("GTM_TLS_LISTEN", "127.0.0.1:8443", "GTM_TLS_CERT");
}

static void test_parsers(void **state)
{
    (void)state;
    size_t sz;
    assert_int_equal(config_parse_size("1M", &sz), 0);
    assert_int_equal(sz, 1048576);
    assert_int_equal(config_parse_size("64KiB", &sz), 0);
    assert_int_equal(sz, 65536);
    assert_int_equal(config_parse_size("12x", &sz), -1);
    double s;
    assert_int_equal(config_parse_seconds("0.25", &s), 0);
    assert_true(s == 0.25);
    assert_int_equal(config_parse_seconds("0", &s), -1);
    assert_int_equal(config_parse_seconds("nan", &s), -1);
    struct listen_spec l;
    assert_int_equal(config_parse_listen("[::1]:8443", &l), 0);
    assert_int_equal(l.addr.ss_family, AF_INET6);
    assert_int_equal(config_parse_listen(":8000", &l), 0);
    assert_int_equal(config_parse_listen("localhost:8000", &l), 0);
    assert_int_equal(config_parse_listen("[::1]8443", &l), -1);
}

static void test_cors_list(void **state)
{
    (void)state;
    clear_env();
    setenv("CORS_ORIGINS", " https://a.example/ ,http://b.example:3000,,*", 1);
    struct config c;
    char err[256];
    assert_int_equal(config_load(&c, err, sizeof err), 0);
    assert_int_equal(c.n_cors_origins, 3);
    assert_string_equal(c.cors_origins[0], "https://a.example");
    assert_string_equal(c.cors_origins[1], "http://b.example:3000");
    assert_string_equal(c.cors_origins[2], "*");
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_values_name_the_variable),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_cors_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
