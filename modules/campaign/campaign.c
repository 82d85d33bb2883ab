/* campaign: the /api/campaigns routes (CRUD; generation and positioning
 * arrive with the AI pipeline).  Ownership runs through the campaign's
 * account and its company.  Creating one checks the persona (as upstream)
 * and the account too (upstream let a foreign account through to a 500). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crud.h"
#include "crud_sql.h"
#include "gen_route.h"

#define NOT_FOUND "Campaign not found"

#define OWNED_CAMPAIGN                                                                     \
    "campaigns x JOIN accounts a ON a.id = x.account_id "                                  \
    "JOIN companies c ON c.id = a.company_id AND c.user_id = $2::uuid"

static void campaign_create(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    char *account_id = h->req_alloc(req, 37), *persona_id = h->req_alloc(req, 37);
    if (!account_id || !persona_id) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    h->arg_uuid(req, "query", "account_id", 1, account_id);
    h->arg_uuid(req, "query", "persona_id", 1, persona_id);
    json_t *body = crud_body_object(c, req);
    const char *name = NULL, *type = NULL;
    json_t *data = NULL;
    if (body) {
        name = crud_field_str(c, req, body, "name", true, false, 255, NULL);
        type = crud_field_str(c, req, body, "type", true, false, 50, NULL);
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
        "WITH p AS (SELECT pe.id FROM personas pe JOIN accounts pa ON pa.id = pe.account_id "
        "           JOIN companies pc ON pc.id = pa.company_id AND pc.user_id = $2::uuid WHERE pe.id = $3::uuid), "
        "ac AS (SELECT aa.id FROM accounts aa JOIN companies ac2 ON ac2.id = aa.company_id AND ac2.user_id = $2::uuid "
        "       WHERE aa.id = $1::uuid), "
        "x AS (INSERT INTO campaigns (id, account_id, persona_id, name, type, data, created_at, updated_at) "
        "      SELECT gen_random_uuid(), ac.id, p.id, $4, $5, $6::jsonb, gtm_utcnow(), gtm_utcnow() FROM p, ac "
        "      RETURNING *) "
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM p) OR NOT EXISTS (SELECT 1 FROM ac) THEN 404 ELSE 201 END, "
        "       CASE WHEN NOT EXISTS (SELECT 1 FROM p) THEN 'Persona not found' "
        "            WHEN NOT EXISTS (SELECT 1 FROM ac) THEN 'Account not found' "
        "            ELSE (SELECT " SQL_CAMPAIGN_JSON("x") "::text FROM x) END";
    const char *params[] = {account_id, user, persona_id, name, type, data_text};
    struct gtm_pg_stmt stmt = {sql, 6, params};
    crud_query_status_and_respond(c, req, &stmt);
}

static void campaign_list(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    const struct gtm_host *h = c->host;
    const char *user = crud_user(c, req);
    if (!user) {
        return;
    }
    char account_id[37], persona_id[37];
    long skip, limit;
    h->arg_uuid(req, "query", "account_id", 1, account_id);
    int has_persona = h->arg_uuid(req, "query", "persona_id", 0, persona_id);
    crud_paging(c, req, &skip, &limit);
    if (h->fail_if_invalid(req)) {
        return;
    }
    static const char sql[] =
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM accounts a JOIN companies c ON c.id = a.company_id "
        "                         AND c.user_id = $2::uuid WHERE a.id = $1::uuid) THEN ("
        SQL_JSON_LIST(SQL_CAMPAIGN_JSON("x"), "campaigns x WHERE x.account_id = $1::uuid "
                                              "AND ($3::uuid IS NULL OR x.persona_id = $3::uuid) "
                                              "ORDER BY x.created_at, x.id OFFSET $4 LIMIT $5")
        ") END";
    const char *params[] = {account_id, user, has_persona == 1 ? persona_id : NULL, crud_long(c, req, skip),
                            crud_long(c, req, limit)};
    struct gtm_pg_stmt stmt = {sql, 5, params};
    crud_query_and_respond(c, req, &stmt, 200, "Account not found");
}

static void campaign_get(void *state, struct gtm_req *req)
{
    static const char sql[] = "SELECT " SQL_CAMPAIGN_JSON("x") "::text FROM " OWNED_CAMPAIGN " WHERE x.id = $1::uuid";
    crud_get(state, req, "campaign_id", sql, NOT_FOUND);
}

static void campaign_update(void *state, struct gtm_req *req)
{
    /* NOT NULL columns refuse null with a 422, where the upstream let the
     * database fail with a plain-text 500 */
    static const struct crud_field fields[] = {
        {"name", CRUD_STR, 255, false},
        {"type", CRUD_STR, 50, false},
        {"data", CRUD_OBJ, 0, false},
    };
    /* only the keys present change; updated_at moves only when a value does */
    static const char sql[] =
        "WITH cur AS (SELECT x.* FROM " OWNED_CAMPAIGN " WHERE x.id = $1::uuid FOR UPDATE OF x), "
        "nv AS (SELECT id, CASE WHEN $3::bool THEN $4::varchar ELSE name END AS name, "
        "              CASE WHEN $5::bool THEN $6::varchar ELSE type END AS type, "
        "              CASE WHEN $7::bool THEN $8::jsonb ELSE data END AS data, "
        "              name AS old_name, type AS old_type, data AS old_data FROM cur) "
        "UPDATE campaigns x SET name = nv.name, type = nv.type, data = nv.data, "
        "  updated_at = CASE WHEN (nv.name, nv.type, nv.data) IS DISTINCT FROM (nv.old_name, nv.old_type, nv.old_data) "
        "                    THEN gtm_utcnow() ELSE x.updated_at END "
        "FROM nv WHERE x.id = nv.id "
        "RETURNING " SQL_CAMPAIGN_JSON("x") "::text";
    crud_update(state, req, "campaign_id", fields, sizeof fields / sizeof fields[0], sql, NOT_FOUND);
}

static void campaign_delete(void *state, struct gtm_req *req)
{
    const struct crud_ctx *c = state;
    char id[37];
    const char *user;
    if (!crud_path_id(c, req, "campaign_id", id, &user)) {
        return;
    }
    static const char del_campaign[] =
        "DELETE FROM campaigns WHERE id IN (SELECT x.id FROM " OWNED_CAMPAIGN " WHERE x.id = $1::uuid)";
    const char *params[] = {id, user};
    const struct gtm_pg_stmt stmts[] = {{del_campaign, 2, params}};
    crud_delete_and_respond(c, req, stmts, 1, NOT_FOUND);
}

/* EmailGenerationRequest: four optional objects.  The upstream failed with
 * a 500 when company_context had no capabilities list; here it is optional. */
static void email_build(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars, const char **url)
{
    (void)url;
    gen_var_obj(c, req, body, vars, "company_context");
    gen_var_obj(c, req, body, vars, "target_account");
    gen_var_obj(c, req, body, vars, "target_persona");
    gen_var_obj(c, req, body, vars, "preferences");
    char top3[1024] = "";
    json_t *caps = json_object_get(json_object_get(vars, "company_context"), "capabilities");
    size_t i, used = 0;
    json_t *cap;
    json_array_foreach(caps, i, cap) {
        if (i == 3 || !json_is_string(cap)) {
            break;
        }
        int n = snprintf(top3 + used, sizeof top3 - used, "%s%s", i ? ", " : "", json_string_value(cap));
        if (n < 0 || (size_t)n >= sizeof top3 - used) {
            break;
        }
        used += (size_t)n;
    }
    json_object_set_new(vars, "capabilities_top3", json_string(top3));
}

/* The upstream's fixed colour per breakdown segment. */
static const char *segment_colour(const char *key)
{
    static const struct {
        const char *keys[4];
        const char *colour;
    } table[] = {
        {{"subject", "greeting"}, "bg-purple-50 border-purple-200"},
        {{"intro", "opening"}, "bg-blue-50 border-blue-200"},
        {{"context"}, "bg-teal-50 border-teal-200"},
        {{"pain-point", "problem"}, "bg-red-50 border-red-200"},
        {{"solution", "company-intro"}, "bg-green-50 border-green-200"},
        {{"emphasis", "value", "evidence"}, "bg-indigo-50 border-indigo-200"},
        {{"social-proof", "testimonial"}, "bg-pink-50 border-pink-200"},
        {{"urgency"}, "bg-orange-50 border-orange-200"},
        {{"cta", "call-to-action", "next-steps"}, "bg-yellow-50 border-yellow-200"},
        {{"signature", "closing", "ps"}, "bg-gray-50 border-gray-200"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        for (size_t k = 0; k < 4 && table[i].keys[k]; k++) {
            if (strcmp(key, table[i].keys[k]) == 0) {
                return table[i].colour;
            }
        }
    }
    return "bg-blue-50 border-blue-200";
}

/* As upstream: a server-made generation_id, the elapsed milliseconds, and
 * the fixed breakdown colours. */
static int email_finish(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *output,
                        const struct gtm_gen_result *res, const char **detail)
{
    (void)body, (void)detail;
    unsigned char raw[16];
    char id[37];
    if (c->host->random_bytes(raw, sizeof raw) != 0) {
        *detail = "Internal server error";
        return 500;
    }
    raw[6] = (unsigned char)((raw[6] & 0x0f) | 0x40);
    raw[8] = (unsigned char)((raw[8] & 0x3f) | 0x80);
    snprintf(id, sizeof id, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", raw[0], raw[1],
             raw[2], raw[3], raw[4], raw[5], raw[6], raw[7], raw[8], raw[9], raw[10], raw[11], raw[12], raw[13],
             raw[14], raw[15]);
    json_t *meta = json_object_get(output, "metadata");
    if (json_is_object(meta)) {
        json_object_set_new(meta, "generation_id", json_string(id));
        json_object_set_new(meta, "processing_time_ms", json_integer((json_int_t)res->duration_ms));
    }
    const char *key;
    json_t *segment;
    json_object_foreach(json_object_get(output, "breakdown"), key, segment) {
        if (json_is_object(segment)) {
            json_object_set_new(segment, "color", json_string(segment_colour(key)));
        }
    }
    (void)req;
    return 0;
}

static const struct gen_spec email_spec = {"email_generation", email_build, email_finish};

static void campaign_generate(void *state, struct gtm_req *req)
{
    gen_route(state, req, &email_spec);
}

/* Positioning, generated for real (the upstream answered a fixed placeholder):
 * any JSON object is the context. */
static void positioning_build(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars,
                              const char **url)
{
    (void)req, (void)url, (void)c;
    json_object_set(vars, "context", body);
    json_t *company = json_object_get(body, "company_context");
    json_object_set(vars, "company_context", json_is_object(company) ? company : json_null());
}

static const struct gen_spec positioning_spec = {"positioning", positioning_build, NULL};

static void campaign_positioning(void *state, struct gtm_req *req)
{
    gen_route(state, req, &positioning_spec);
}

static const struct gtm_route routes[] = {
    {GTM_POST, "/api/campaigns/generate-ai", campaign_generate, GTM_ROUTE_AUTH | GTM_ROUTE_RATELIMIT, "campaign_generate"},
    {GTM_POST, "/api/campaigns/positioning", campaign_positioning, GTM_ROUTE_AUTH | GTM_ROUTE_RATELIMIT,
     "campaign_generate"},
    {GTM_POST, "/demo/campaigns/generate-ai", campaign_generate, GTM_ROUTE_RATELIMIT, "demo:campaign_generate"},
    {GTM_POST, "/api/campaigns", campaign_create, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/campaigns", campaign_list, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/campaigns/{campaign_id}", campaign_get, GTM_ROUTE_AUTH, NULL},
    {GTM_PUT, "/api/campaigns/{campaign_id}", campaign_update, GTM_ROUTE_AUTH, NULL},
    {GTM_DELETE, "/api/campaigns/{campaign_id}", campaign_delete, GTM_ROUTE_AUTH, NULL},
};

CRUD_MODULE("campaign", routes)
