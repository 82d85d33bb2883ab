/* Router: static and {param} segments, precedence, 405 allow sets, clashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "http/router.h"

static void h1(void *s, struct gtm_req *r) { (void)s; (void)r; }
static void h2(void *s, struct gtm_req *r) { (void)s; (void)r; }
static void h3(void *s, struct gtm_req *r) { (void)s; (void)r; }

static int setup(void **state)
{
    static struct router r;
    memset(&r, 0, sizeof r);
    char err[128];
    assert_int_equal(router_add(&r, "/api/companies", GTM_GET | GTM_POST, h1, NULL, 0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(router_add(&r, "/api/companies/{company_id}", GTM_GET | GTM_PUT | GTM_DELETE, h2, NULL, 0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(router_add(&r, "/api/companies/generate-ai", GTM_POST, h3, NULL, 0, NULL, NULL, err, sizeof err), 0);
    *state = &r;
    return 0;
}

static int teardown(void **state)
{
    router_free(*state);
    return 0;
}

static void test_static_and_param(void **state)
{
    struct route_match m;
    assert_int_equal(router_match(*state, "/api/companies", GTM_GET, &m), ROUTE_FOUND);
    assert_ptr_equal(m.entry->handler, h1);
    assert_int_equal(router_match(*state, "/api/companies/abc", GTM_PUT, &m), ROUTE_FOUND);
    assert_ptr_equal(m.entry->handler, h2);
    assert_int_equal(m.n_params, 1);
    assert_string_equal(m.names[0], "{company_id}");
    assert_int_equal(m.value_lens[0], 3);
    assert_memory_equal(m.values[0], "abc", 3);
}

static void test_static_wins_over_param(void **state)
{
    struct route_match m;
    assert_int_equal(router_match(*state, "/api/companies/generate-ai", GTM_POST, &m), ROUTE_FOUND);
    assert_ptr_equal(m.entry->handler, h3);
    /* GET on the static path falls to the parameter route, as Starlette does */
    assert_int_equal(router_match(*state, "/api/companies/generate-ai", GTM_GET, &m), ROUTE_FOUND);
    assert_ptr_equal(m.entry->handler, h2);
}

static void test_method_not_allowed(void **state)
{
    struct route_match m;
    char allow[96];
    assert_int_equal(router_match(*state, "/api/companies", GTM_DELETE, &m), ROUTE_METHOD);
    assert_string_equal(router_allow_text(m.allow, allow, sizeof allow), "GET, HEAD, POST");
    assert_int_equal(router_match(*state, "/api/companies/x", GTM_POST, &m), ROUTE_METHOD);
    assert_string_equal(router_allow_text(m.allow, allow, sizeof allow), "GET, HEAD, PUT, DELETE");
}

static void test_head_matches_get(void **state)
{
    struct route_match m;
    assert_int_equal(router_match(*state, "/api/companies", GTM_HEAD, &m), ROUTE_FOUND);
    assert_ptr_equal(m.entry->handler, h1);
}

static void test_no_match(void **state)
{
    struct route_match m;
    assert_int_equal(router_match(*state, "/api", GTM_GET, &m), ROUTE_NONE);
    assert_int_equal(router_match(*state, "/api/companies/x/y", GTM_GET, &m), ROUTE_NONE);
    assert_int_equal(router_match(*state, "/api/companies/", GTM_GET, &m), ROUTE_NONE);
    assert_int_equal(router_match(*state, "api/companies", GTM_GET, &m), ROUTE_NONE);
    assert_int_equal(router_match(*state, "/api//companies", GTM_GET, &m), ROUTE_NONE);
}

static void test_clash_and_bad_patterns(void **state)
{
    char err[128];
    assert_int_equal(router_add(*state, "/api/companies/{id}", GTM_GET, h1, NULL, 0, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "clashes"));
    /* same shape, disjoint methods: fine */
    assert_int_equal(router_add(*state, "/api/companies/{id}", GTM_PATCH, h1, NULL, 0, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(router_add(*state, "no-slash", GTM_GET, h1, NULL, 0, NULL, NULL, err, sizeof err), -1);
    assert_int_equal(router_add(*state, "/trailing/", GTM_GET, h1, NULL, 0, NULL, NULL, err, sizeof err), -1);
    assert_int_equal(router_add(*state, "/a//b", GTM_GET, h1, NULL, 0, NULL, NULL, err, sizeof err), -1);
}

static void test_remove_module(void **state)
{
    (void)state;
    struct router r = {0};
    char err[128];
    struct gtm_mod *a = (struct gtm_mod *)0x1, *b = (struct gtm_mod *)0x2;
    router_add(&r, "/a", GTM_GET, h1, NULL, 0, NULL, a, err, sizeof err);
    router_add(&r, "/b", GTM_GET, h2, NULL, 0, NULL, b, err, sizeof err);
    router_add(&r, "/a/{x}", GTM_GET, h3, NULL, 0, NULL, a, err, sizeof err);
    router_remove_module(&r, a);
    struct route_match m;
    assert_int_equal(router_match(&r, "/a", GTM_GET, &m), ROUTE_NONE);
    assert_int_equal(router_match(&r, "/b", GTM_GET, &m), ROUTE_FOUND);
    router_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_static_and_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_wins_over_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_matches_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clash_and_bad_patterns, setup, teardown),
        cmocka_unit_test(test_remove_module),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
