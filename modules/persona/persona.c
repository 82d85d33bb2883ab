/* persona: the /api/personas routes (CRUD; generation arrives with the AI
 * pipeline), with the upstream's list filters.  Ownership runs through the
 * persona's account and its company. */
#include <stdlib.h>
#include <string.h>

#include "crud.h"
#include "crud_sql.h"
#include "gen_route.h"

#define NOT_FOUND "Persona not found"

#define OWNED_ACCOUNT_AS(a) "accounts " a " JOIN companies c ON c.id = " a ".company_id AND c.user_id = $2::uuid"
#define OWNED_PERSONA                                                                      \
    "personas x JOIN accounts a ON a.id = x.account_id "                                   \
    "JOIN companies c ON c.id = a.company_id AND c.user_id = $2::uuid"

/* Personas p as a JSON array ordered by the given keys. */
#define PERSONA_ARRAY(order) "coalesce(json_agg(" SQL_PERSONA_JSON("p") " ORDER BY " order "), '[]')::text"

static void persona_create(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    char *account_id = h->req_alloc(req, 37);
    if (!account_id) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    h->arg_uuid(req, "query", "account_id", 1, account_id);
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
        "WITH x AS (INSERT INTO personas (id, account_id, name, data, created_at, updated_at) "
        "           SELECT gen_random_uuid(), ac.id, $3, $4::jsonb, gtm_utcnow(), gtm_utcnow() "
        "           FROM " OWNED_ACCOUNT_AS("ac") " WHERE ac.id = $1::uuid RETURNING *) "
        "SELECT " SQL_PERSONA_JSON("x") "::text FROM x";
    const char *params[] = {account_id, user, name, data_text};
    struct gtm_pg_stmt stmt = {sql, 4, params};
    crud_query_and_respond(c, req, &stmt, 201, "Account not found");
}

/* GET /api/personas: four ways, as the upstream filters (skip is used only
 * when an account is named). */
static void persona_list(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    char account_id[37], company_id[37];
    long skip, limit;
    int has_account = h->arg_uuid(req, "query", "account_id", 0, account_id);
    int has_company = h->arg_uuid(req, "query", "company_id", 0, company_id);
    crud_paging(c, req, &skip, &limit);
    if (h->fail_if_invalid(req)) {
        return;
    }
    const char *s_skip = crud_long(c, req, skip), *s_limit = crud_long(c, req, limit);
    if (has_account == 1) {
        static const char sql[] =
            "SELECT CASE WHEN ac.id IS NULL OR ($3::uuid IS NOT NULL AND ac.company_id <> $3::uuid) THEN 404 ELSE 200 END, "
            "       CASE WHEN ac.id IS NULL THEN 'Account not found' "
            "            WHEN $3::uuid IS NOT NULL AND ac.company_id <> $3::uuid THEN 'Account does not belong to company' "
            "            ELSE (SELECT " PERSONA_ARRAY("p.created_at, p.id") " FROM (SELECT * FROM personas "
            "                  WHERE account_id = ac.id ORDER BY created_at, id OFFSET $4 LIMIT $5) p) END "
            "FROM (SELECT 1) one LEFT JOIN (SELECT a.* FROM " OWNED_ACCOUNT_AS("a") " WHERE a.id = $1::uuid) ac ON true";
        const char *params[] = {account_id, user, has_company == 1 ? company_id : NULL, s_skip, s_limit};
        struct gtm_pg_stmt stmt = {sql, 5, params};
        crud_query_status_and_respond(c, req, &stmt);
    } else if (has_company == 1) {
        static const char sql[] =
            "SELECT CASE WHEN co.id IS NULL THEN 404 ELSE 200 END, "
            "       CASE WHEN co.id IS NULL THEN 'Company not found' ELSE ("
            "         SELECT " PERSONA_ARRAY("a.created_at, a.id, p.created_at, p.id")
            "         FROM (SELECT * FROM accounts WHERE company_id = co.id ORDER BY created_at, id LIMIT $3) a "
            "         CROSS JOIN LATERAL (SELECT * FROM personas WHERE account_id = a.id "
            "                             ORDER BY created_at, id LIMIT $3) p) END "
            "FROM (SELECT 1) one LEFT JOIN companies co ON co.id = $1::uuid AND co.user_id = $2::uuid";
        const char *params[] = {company_id, user, s_limit};
        struct gtm_pg_stmt stmt = {sql, 3, params};
        crud_query_status_and_respond(c, req, &stmt);
    } else {
        static const char sql[] =
            "WITH co AS (SELECT * FROM companies WHERE user_id = $1::uuid ORDER BY created_at, id LIMIT 100) "
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM co) THEN 403 ELSE 200 END, "
            "       CASE WHEN NOT EXISTS (SELECT 1 FROM co) THEN 'User has no companies/accounts' ELSE ("
            "         SELECT " PERSONA_ARRAY("co.created_at, co.id, a.created_at, a.id, p.created_at, p.id")
            "         FROM co CROSS JOIN LATERAL (SELECT * FROM accounts WHERE company_id = co.id "
            "                                     ORDER BY created_at, id LIMIT 100) a "
            "         CROSS JOIN LATERAL (SELECT * FROM personas WHERE account_id = a.id "
            "                             ORDER BY created_at, id LIMIT $2) p) END";
        const char *params[] = {user, s_limit};
        struct gtm_pg_stmt stmt = {sql, 2, params};
        crud_query_status_and_respond(c, req, &stmt);
    }
}

static void persona_get(void *state, struct gtm_req *req)
{
    static const char sql[] = "SELECT " SQL_PERSONA_JSON("x") "::text FROM " OWNED_PERSONA " WHERE x.id = $1::uuid";
    crud_get(state, req, "persona_id", sql, NOT_FOUND);
}

static void persona_relations(void *state, struct gtm_req *req)
{
    static const char sql[] =
        "SELECT json_build_object('name',x.name,'data',x.data,'id',x.id,'account_id',x.account_id,"
        "'created_at',gtm_ts(x.created_at),'updated_at',gtm_ts(x.updated_at),"
        "'campaigns',(SELECT coalesce(json_agg(" SQL_CAMPAIGN_JSON("k") " ORDER BY k.created_at, k.id), '[]') "
        "             FROM campaigns k WHERE k.persona_id = x.id))::text "
        "FROM " OWNED_PERSONA " WHERE x.id = $1::uuid";
    crud_get(state, req, "persona_id", sql, NOT_FOUND);
}

static void persona_update(void *state, struct gtm_req *req)
{
    /* NOT NULL columns refuse null with a 422, where the upstream let the
     * database fail with a plain-text 500 */
    static const struct crud_field fields[] = {
        {"name", CRUD_STR, 255, false},
        {"data", CRUD_OBJ, 0, false},
    };
    /* only the keys present change; updated_at moves only when a value does */
    static const char sql[] =
        "WITH cur AS (SELECT x.* FROM " OWNED_PERSONA " WHERE x.id = $1::uuid FOR UPDATE OF x), "
        "nv AS (SELECT id, CASE WHEN $3::bool THEN $4::varchar ELSE name END AS name, "
        "              CASE WHEN $5::bool THEN $6::jsonb ELSE data END AS data, "
        "              name AS old_name, data AS old_data FROM cur) "
        "UPDATE personas x SET name = nv.name, data = nv.data, "
        "  updated_at = CASE WHEN (nv.name, nv.data) IS DISTINCT FROM (nv.old_name, nv.old_data) "
        "                    THEN gtm_utcnow() ELSE x.updated_at END "
        "FROM nv WHERE x.id = nv.id "
        "RETURNING " SQL_PERSONA_JSON("x") "::text";
    crud_update(state, req, "persona_id", fields, sizeof fields / sizeof fields[0], sql, NOT_FOUND);
}

static void persona_delete(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    char id[37];
    const char *user;
    if (!crud_path_id(c, req, "persona_id", id, &user)) {
        return;
    }
    static const char del_campaigns[] =
        "DELETE FROM campaigns WHERE persona_id IN (SELECT x.id FROM " OWNED_PERSONA " WHERE x.id = $1::uuid)";
    static const char del_persona[] =
        "DELETE FROM personas WHERE id IN (SELECT x.id FROM " OWNED_PERSONA " WHERE x.id = $1::uuid)";
    const char *params[] = {id, user};
    const struct gtm_pg_stmt stmts[] = {{del_campaigns, 2, params}, {del_persona, 2, params}};
    crud_delete_and_respond(c, req, stmts, 2, NOT_FOUND);
}

static void target_persona_build(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars,
                                 const char **url)
{
    gen_var_str(c, req, body, vars, "website_url", true);
    gen_var_str(c, req, body, vars, "persona_profile_name", false);
    gen_var_str(c, req, body, vars, "hypothesis", false);
    gen_var_str(c, req, body, vars, "additional_context", false);
    gen_var_obj(c, req, body, vars, "company_context");
    gen_var_obj(c, req, body, vars, "target_account_context");
    *url = json_string_value(json_object_get(vars, "website_url"));
}

/* As upstream: the caller's persona_profile_name, when given, is the name. */
static int target_persona_finish(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *output,
                                 const struct gtm_gen_result *res, const char **detail)
{
    (void)c, (void)req, (void)res, (void)detail;
    const char *name = json_string_value(json_object_get(body, "persona_profile_name"));
    if (name && *name) {
        json_object_set_new(output, "target_persona_name", json_string(name));
    }
    return 0;
}

static const struct gen_spec target_persona_spec = {"target_persona", target_persona_build, target_persona_finish};

static void persona_generate(void *state, struct gtm_req *req)
{
    gen_route(state, req, &target_persona_spec);
}

static const struct gtm_route routes[] = {
    {GTM_POST, "/api/personas/generate-ai", persona_generate, GTM_ROUTE_AUTH | GTM_ROUTE_RATELIMIT, "persona_generate"},
    {GTM_POST, "/demo/personas/generate-ai", persona_generate, GTM_ROUTE_RATELIMIT, "demo:persona_generate"},
    {GTM_POST, "/api/personas", persona_create, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/personas", persona_list, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/personas/{persona_id}", persona_get, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/personas/{persona_id}/relations", persona_relations, GTM_ROUTE_AUTH, NULL},
    {GTM_PUT, "/api/personas/{persona_id}", persona_update, GTM_ROUTE_AUTH, NULL},
    {GTM_DELETE, "/api/personas/{persona_id}", persona_delete, GTM_ROUTE_AUTH, NULL},
};

CRUD_MODULE("persona", routes)
