/* company: the /api/companies routes (CRUD; generation arrives with the AI
 * pipeline).  Ownership is part of every query: another user's company is
 * simply not found. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crud.h"
#include "crud_sql.h"
#include "gen_route.h"

#define NOT_FOUND "Company not found"

/* The ProductOverviewResponse fields, in the order its dump stores them. */
static const struct {
    const char *key;
    enum { F_STR, F_STR_LIST, F_OPT_STR_LIST, F_OBJ } kind;
} overview_fields[] = {
    {"company_name", F_STR},
    {"company_url", F_STR},
    {"description", F_STR},
    {"business_profile_insights", F_OPT_STR_LIST},
    {"capabilities", F_STR_LIST},
    {"use_case_analysis_insights", F_OPT_STR_LIST},
    {"positioning_insights", F_OPT_STR_LIST},
    {"objections", F_STR_LIST},
    {"target_customer_insights", F_OPT_STR_LIST},
    {"metadata", F_OBJ},
};

/* Upstream builds CompanyCreate from the overview and reports its
 * length limits as one string, not a 422 list. */
static int check_create_lengths(const struct crud_ctx *c, struct gtm_req *req, const char *name, const char *url)
{
    char detail[512];
    size_t n = 0;
    int errors = (crud_utf8_len(name) > 255) + (crud_utf8_len(url) > 500);
    if (errors == 0) {
        return 0;
    }
    n += (size_t)snprintf(detail + n, sizeof detail - n, "Validation failed: %d validation error%s for CompanyCreate",
                          errors, errors > 1 ? "s" : "");
    if (crud_utf8_len(name) > 255) {
        n += (size_t)snprintf(detail + n, sizeof detail - n,
                              "\nname\n  String should have at most 255 characters [type=string_too_long, input_type=str]");
    }
    if (crud_utf8_len(url) > 500 && n < sizeof detail) {
        snprintf(detail + n, sizeof detail - n,
                 "\nurl\n  String should have at most 500 characters [type=string_too_long, input_type=str]");
    }
    c->host->respond_error(req, 422, detail);
    return -1;
}

static void company_create(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    json_t *body = crud_body_object(c, req);
    json_t *data = json_object();
    if (body) {
        for (size_t i = 0; i < sizeof overview_fields / sizeof overview_fields[0]; i++) {
            const char *key = overview_fields[i].key;
            json_t *v = NULL;
            switch (overview_fields[i].kind) {
            case F_STR:
                if (crud_field_str(c, req, body, key, true, false, 0, NULL)) {
                    v = json_incref(json_object_get(body, key));
                }
                break;
            case F_STR_LIST:
            case F_OPT_STR_LIST: {
                bool opt = overview_fields[i].kind == F_OPT_STR_LIST;
                if (crud_field_str_list(c, req, body, key, !opt, opt, &v)) {
                    v = v ? json_incref(v) : json_null();
                }
                break;
            }
            case F_OBJ:
                if (crud_field_obj(c, req, body, key, true, false, &v, NULL)) {
                    v = json_incref(v);
                }
                break;
            }
            json_object_set_new(data, key, v ? v : json_null());
        }
    }
    if (h->fail_if_invalid(req)) {
        json_decref(data);
        return;
    }
    const char *name = json_string_value(json_object_get(data, "company_name"));
    const char *url = json_string_value(json_object_get(data, "company_url"));
    if (check_create_lengths(c, req, name, url) < 0) {
        json_decref(data);
        return;
    }
    char *data_copy = crud_json_text(c, req, data);
    json_decref(data);
    if (!data_copy) {
        return;
    }
    /* The upstream provisions the user's row on first create. */
    static const char sql[] =
        "WITH u AS (INSERT INTO users (id, created_at, role) VALUES ($1::uuid, gtm_utcnow(), 'user') "
        "           ON CONFLICT (id) DO NOTHING), "
        "x AS (INSERT INTO companies (id, user_id, name, url, data, created_at, updated_at) "
        "      VALUES (gen_random_uuid(), $1::uuid, $2, $3, $4::jsonb, gtm_utcnow(), gtm_utcnow()) RETURNING *) "
        "SELECT " SQL_COMPANY_JSON("x") "::text FROM x";
    const char *params[] = {user, name, url, data_copy};
    struct gtm_pg_stmt stmt = {sql, 4, params};
    crud_query_and_respond(c, req, &stmt, 201, NOT_FOUND);
}

static void company_list(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    long skip, limit;
    if (!user) {
        return;
    }
    crud_paging(c, req, &skip, &limit);
    if (h->fail_if_invalid(req)) {
        return;
    }
    static const char sql[] = SQL_JSON_LIST(SQL_COMPANY_JSON("x"),
                                            "companies x WHERE x.user_id = $1::uuid "
                                            "ORDER BY x.created_at, x.id OFFSET $2 LIMIT $3");
    const char *params[] = {user, crud_long(c, req, skip), crud_long(c, req, limit)};
    struct gtm_pg_stmt stmt = {sql, 3, params};
    crud_query_and_respond(c, req, &stmt, 200, NOT_FOUND);
}

/* The path id, checked; NULL after answering 422 (or 401). */
static void company_get(void *state, struct gtm_req *req)
{
    static const char sql[] = "SELECT " SQL_COMPANY_JSON("x") "::text FROM companies x "
                              "WHERE x.id = $1::uuid AND x.user_id = $2::uuid";
    crud_get(state, req, "company_id", sql, NOT_FOUND);
}

static void company_relations(void *state, struct gtm_req *req)
{
    /* CompanyWithRelations: the company's keys, then its accounts */
    static const char sql[] =
        "SELECT json_build_object('name',x.name,'url',x.url,'data',x.data,'id',x.id,'user_id',x.user_id,"
        "'created_at',gtm_ts(x.created_at),'updated_at',gtm_ts(x.updated_at),"
        "'accounts',(SELECT coalesce(json_agg(" SQL_ACCOUNT_JSON("a") " ORDER BY a.created_at, a.id), '[]') "
        "            FROM accounts a WHERE a.company_id = x.id))::text "
        "FROM companies x WHERE x.id = $1::uuid AND x.user_id = $2::uuid";
    crud_get(state, req, "company_id", sql, NOT_FOUND);
}

static void company_update(void *state, struct gtm_req *req)
{
    /* NOT NULL columns refuse null with a 422, where the upstream let the
     * database fail with a plain-text 500 */
    static const struct crud_field fields[] = {
        {"name", CRUD_STR, 255, false},
        {"url", CRUD_STR, 500, false},
        {"data", CRUD_OBJ, 0, true},
    };
    /* only the keys present change; updated_at moves only when a value does */
    static const char sql[] =
        "WITH cur AS (SELECT * FROM companies WHERE id = $1::uuid AND user_id = $2::uuid FOR UPDATE), "
        "nv AS (SELECT id, CASE WHEN $3::bool THEN $4::varchar ELSE name END AS name, "
        "              CASE WHEN $5::bool THEN $6::varchar ELSE url END AS url, "
        "              CASE WHEN $7::bool THEN $8::jsonb ELSE data END AS data, "
        "              name AS old_name, url AS old_url, data AS old_data FROM cur) "
        "UPDATE companies x SET name = nv.name, url = nv.url, data = nv.data, "
        "  updated_at = CASE WHEN (nv.name, nv.url, nv.data) IS DISTINCT FROM (nv.old_name, nv.old_url, nv.old_data) "
        "                    THEN gtm_utcnow() ELSE x.updated_at END "
        "FROM nv WHERE x.id = nv.id "
        "RETURNING " SQL_COMPANY_JSON("x") "::text";
    crud_update(state, req, "company_id", fields, sizeof fields / sizeof fields[0], sql, NOT_FOUND);
}

static void company_delete(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    char id[37];
    const char *user;
    if (!crud_path_id(c, req, "company_id", id, &user)) {
        return;
    }
    /* Children first, all in one transaction: the foreign keys do not cascade. */
    static const char del_campaigns[] =
        "DELETE FROM campaigns WHERE account_id IN (SELECT a.id FROM accounts a JOIN companies c ON c.id = a.company_id "
        "WHERE c.id = $1::uuid AND c.user_id = $2::uuid) OR persona_id IN (SELECT p.id FROM personas p "
        "JOIN accounts a ON a.id = p.account_id JOIN companies c ON c.id = a.company_id "
        "WHERE c.id = $1::uuid AND c.user_id = $2::uuid)";
    static const char del_personas[] =
        "DELETE FROM personas WHERE account_id IN (SELECT a.id FROM accounts a JOIN companies c ON c.id = a.company_id "
        "WHERE c.id = $1::uuid AND c.user_id = $2::uuid)";
    static const char del_accounts[] =
        "DELETE FROM accounts WHERE company_id IN (SELECT id FROM companies WHERE id = $1::uuid AND user_id = $2::uuid)";
    static const char del_company[] = "DELETE FROM companies WHERE id = $1::uuid AND user_id = $2::uuid";
    const char *params[] = {id, user};
    const struct gtm_pg_stmt stmts[] = {
        {del_campaigns, 2, params},
        {del_personas, 2, params},
        {del_accounts, 2, params},
        {del_company, 2, params},
    };
    crud_delete_and_respond(c, req, stmts, 4, NOT_FOUND);
}

/* ProductOverviewRequest: company_context is accepted and, as upstream,
 * not used. */
static void overview_build(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars,
                           const char **url)
{
    gen_var_str(c, req, body, vars, "website_url", true);
    gen_var_str(c, req, body, vars, "user_inputted_context", false);
    crud_field_str(c, req, body, "company_context", false, true, 0, NULL);
    *url = json_string_value(json_object_get(vars, "website_url"));
}

static int overview_finish(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *output,
                           const struct gtm_gen_result *res, const char **detail)
{
    (void)c, (void)req, (void)body, (void)res;
    const char *quality = json_string_value(json_object_get(json_object_get(output, "metadata"), "context_quality"));
    if (quality && strcmp(quality, "insufficient") == 0) {
        *detail = "Insufficient website content to analyse this company. Add what you know about it in "
                  "user_inputted_context, or try another URL.";
        return 422;
    }
    return 0;
}

static const struct gen_spec overview_spec = {"product_overview", overview_build, overview_finish};

static void company_generate(void *state, struct gtm_req *req)
{
    gen_route(state, req, &overview_spec);
}

static const struct gtm_route routes[] = {
    {GTM_POST, "/api/companies/generate-ai", company_generate, GTM_ROUTE_AUTH | GTM_ROUTE_RATELIMIT, "company_generate"},
    {GTM_POST, "/demo/companies/generate-ai", company_generate, GTM_ROUTE_RATELIMIT, "demo:company_generate"},
    {GTM_POST, "/api/companies", company_create, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/companies", company_list, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/companies/{company_id}", company_get, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/companies/{company_id}/relations", company_relations, GTM_ROUTE_AUTH, NULL},
    {GTM_PUT, "/api/companies/{company_id}", company_update, GTM_ROUTE_AUTH, NULL},
    {GTM_DELETE, "/api/companies/{company_id}", company_delete, GTM_ROUTE_AUTH, NULL},
};

CRUD_MODULE("company", routes)
