/* account: the /api/accounts routes (CRUD; generation arrives with the AI
 * pipeline).  An account belongs to a company; ownership is checked through
 * it in every query, and another user's account is simply not found. */
#include <stdlib.h>
#include <string.h>

#include "crud.h"
#include "crud_sql.h"
#include "gen_route.h"

#define NOT_FOUND "Account not found"
#define COMPANY_NOT_FOUND "Company not found"

/* An owned account x, joined through its company c. */
#define OWNED_ACCOUNT "accounts x JOIN companies c ON c.id = x.company_id AND c.user_id = $2::uuid"

static void account_create(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    char *company_id = h->req_alloc(req, 37);
    if (!company_id) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    h->arg_uuid(req, "query", "company_id", 1, company_id);
    json_t *body = crud_body_object(c, req);
    const char *name = NULL;
    json_t *data = NULL;
    if (body) {
        name = crud_field_str(c, req, body, "name", true, false, 255, NULL);
        crud_field_obj(c, req, body, "data", true, false, &data, NULL);
    }
    if (h->fail_if_invalid(req)) {
        return;
    }
    char *data_text = crud_json_text(c, req, data);
    if (!data_text) {
        return;
    }
    static const char sql[] =
        "WITH x AS (INSERT INTO accounts (id, company_id, name, data, created_at, updated_at) "
        "           SELECT gen_random_uuid(), co.id, $3, $4::jsonb, gtm_utcnow(), gtm_utcnow() "
        "           FROM companies co WHERE co.id = $1::uuid AND co.user_id = $2::uuid RETURNING *) "
        "SELECT " SQL_ACCOUNT_JSON("x") "::text FROM x";
    const char *params[] = {company_id, user, name, data_text};
    struct gtm_pg_stmt stmt = {sql, 4, params};
    crud_query_and_respond(c, req, &stmt, 201, COMPANY_NOT_FOUND);
}

static void account_list(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    char company_id[37];
    long skip, limit;
    h->arg_uuid(req, "query", "company_id", 1, company_id);
    crud_paging(c, req, &skip, &limit);
    if (h->fail_if_invalid(req)) {
        return;
    }
    /* NULL (404) when the company is not the caller's; [] when it has none */
    static const char sql[] =
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM companies WHERE id = $1::uuid AND user_id = $2::uuid) THEN ("
        SQL_JSON_LIST(SQL_ACCOUNT_JSON("x"), "accounts x WHERE x.company_id = $1::uuid "
                                             "ORDER BY x.created_at, x.id OFFSET $3 LIMIT $4")
        ") END";
    const char *params[] = {company_id, user, crud_long(c, req, skip), crud_long(c, req, limit)};
    struct gtm_pg_stmt stmt = {sql, 4, params};
    crud_query_and_respond(c, req, &stmt, 200, COMPANY_NOT_FOUND);
}

static void account_get(void *state, struct gtm_req *req)
{
    static const char sql[] = "SELECT " SQL_ACCOUNT_JSON("x") "::text FROM " OWNED_ACCOUNT " WHERE x.id = $1::uuid";
    crud_get(state, req, "account_id", sql, NOT_FOUND);
}

static void account_relations(void *state, struct gtm_req *req)
{
    /* AccountWithRelations: the account's keys, then personas and campaigns */
    static const char sql[] =
        "SELECT json_build_object('name',x.name,'data',x.data,'id',x.id,'company_id',x.company_id,"
        "'created_at',gtm_ts(x.created_at),'updated_at',gtm_ts(x.updated_at),"
        "'personas',(SELECT coalesce(json_agg(" SQL_PERSONA_JSON("p") " ORDER BY p.created_at, p.id), '[]') "
        "            FROM personas p WHERE p.account_id = x.id),"
        "'campaigns',(SELECT coalesce(json_agg(" SQL_CAMPAIGN_JSON("k") " ORDER BY k.created_at, k.id), '[]') "
        "             FROM campaigns k WHERE k.account_id = x.id))::text "
        "FROM " OWNED_ACCOUNT " WHERE x.id = $1::uuid";
    crud_get(state, req, "account_id", sql, NOT_FOUND);
}

static void account_update(void *state, struct gtm_req *req)
{
    /* NOT NULL columns refuse null with a 422, where the upstream let the
     * database fail with a plain-text 500 */
    static const struct crud_field fields[] = {
        {"name", CRUD_STR, 255, false},
        {"data", CRUD_OBJ, 0, false},
    };
    /* only the keys present change; updated_at moves only when a value does */
    static const char sql[] =
        "WITH cur AS (SELECT x.* FROM " OWNED_ACCOUNT " WHERE x.id = $1::uuid FOR UPDATE OF x), "
        "nv AS (SELECT id, CASE WHEN $3::bool THEN $4::varchar ELSE name END AS name, "
        "              CASE WHEN $5::bool THEN $6::jsonb ELSE data END AS data, "
        "              name AS old_name, data AS old_data FROM cur) "
        "UPDATE accounts x SET name = nv.name, data = nv.data, "
        "  updated_at = CASE WHEN (nv.name, nv.data) IS DISTINCT FROM (nv.old_name, nv.old_data) "
        "                    THEN gtm_utcnow() ELSE x.updated_at END "
        "FROM nv WHERE x.id = nv.id "
        "RETURNING " SQL_ACCOUNT_JSON("x") "::text";
    crud_update(state, req, "account_id", fields, sizeof fields / sizeof fields[0], sql, NOT_FOUND);
}

static void account_delete(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    char id[37];
    const char *user;
    if (!crud_path_id(c, req, "account_id", id, &user)) {
        return;
    }
    /* Children first, in one transaction: the foreign keys do not cascade. */
    static const char del_campaigns[] =
        "DELETE FROM campaigns WHERE account_id IN (SELECT x.id FROM " OWNED_ACCOUNT " WHERE x.id = $1::uuid) "
        "OR persona_id IN (SELECT p.id FROM personas p JOIN " OWNED_ACCOUNT " ON x.id = p.account_id "
        "WHERE x.id = $1::uuid)";
    static const char del_personas[] =
        "DELETE FROM personas WHERE account_id IN (SELECT x.id FROM " OWNED_ACCOUNT " WHERE x.id = $1::uuid)";
    static const char del_account[] =
        "DELETE FROM accounts WHERE id IN (SELECT x.id FROM " OWNED_ACCOUNT " WHERE x.id = $1::uuid)";
    const char *params[] = {id, user};
    const struct gtm_pg_stmt stmts[] = {
        {del_campaigns, 2, params},
        {del_personas, 2, params},
        {del_account, 2, params},
    };
    crud_delete_and_respond(c, req, stmts, 3, NOT_FOUND);
}

/* TargetAccountRequest.  The website's content now reaches the prompt
 * (the upstream fetched it and threw it away). */
static void target_account_build(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars,
                                 const char **url)
{
    gen_var_str(c, req, body, vars, "website_url", true);
    gen_var_str(c, req, body, vars, "account_profile_name", false);
    gen_var_str(c, req, body, vars, "hypothesis", false);
    gen_var_str(c, req, body, vars, "additional_context", false);
    gen_var_obj(c, req, body, vars, "company_context");
    *url = json_string_value(json_object_get(vars, "website_url"));
}

static const struct gen_spec target_account_spec = {"target_account", target_account_build, NULL};

static void account_generate(void *state, struct gtm_req *req)
{
    gen_route(state, req, &target_account_spec);
}

static const struct gtm_route routes[] = {
    {GTM_POST, "/api/accounts/generate-ai", account_generate, GTM_ROUTE_AUTH | GTM_ROUTE_RATELIMIT, "account_generate"},
    {GTM_POST, "/demo/accounts/generate-ai", account_generate, GTM_ROUTE_RATELIMIT, "demo:account_generate"},
    {GTM_POST, "/api/accounts", account_create, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/accounts", account_list, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/accounts/{account_id}", account_get, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/accounts/{account_id}/relations", account_relations, GTM_ROUTE_AUTH, NULL},
    {GTM_PUT, "/api/accounts/{account_id}", account_update, GTM_ROUTE_AUTH, NULL},
    {GTM_DELETE, "/api/accounts/{account_id}", account_delete, GTM_ROUTE_AUTH, NULL},
};

CRUD_MODULE("account", routes)
