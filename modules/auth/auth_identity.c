/* auth: the /api/neon-auth routes.  profile provisions the user's row;
 * sync-user works (the upstream's always failed); deleting the user removes
 * everything they own in one transaction. */
#include <stdio.h>
#include <string.h>

#include "auth.h"

void neon_profile(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    static const char sql[] =
        "WITH ins AS (INSERT INTO users (id, created_at, role) VALUES ($1::uuid, gtm_utcnow(), 'user') "
        "             ON CONFLICT (id) DO NOTHING RETURNING *), "
        "u AS (SELECT * FROM ins UNION ALL SELECT * FROM users WHERE id = $1::uuid) "
        "SELECT json_build_object('user_id', u.id::text, 'neon_auth_user_id', u.id::text, "
        "'role', coalesce(u.role, 'user'), 'created_at', gtm_ts(u.created_at), "
        "'last_login', gtm_ts(u.last_login))::text FROM u LIMIT 1";
    const char *params[] = {user};
    struct gtm_pg_stmt stmt = {sql, 1, params};
    crud_query_and_respond(&a->crud, req, &stmt, 200, "User not found in database");
}

void neon_sync_user(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    json_t *body = crud_body_object(&a->crud, req);
    const char *claimed = body ? crud_field_str(&a->crud, req, body, "neon_auth_user_id", true, false, 0, NULL) : NULL;
    if (h->fail_if_invalid(req)) {
        return;
    }
    if (strcmp(claimed, user) != 0) {
        h->respond_error(req, 403, "User ID mismatch");
        return;
    }
    static const char sql[] =
        "WITH u AS (INSERT INTO users (id, created_at, role, neon_auth_user_id) "
        "           VALUES ($1::uuid, gtm_utcnow(), 'user', $1) "
        "           ON CONFLICT (id) DO UPDATE SET neon_auth_user_id = EXCLUDED.neon_auth_user_id RETURNING id) "
        "SELECT json_build_object('message', 'User synced successfully', 'user_id', u.id::text, "
        "'neon_auth_user_id', u.id::text)::text FROM u";
    const char *params[] = {user};
    struct gtm_pg_stmt stmt = {sql, 1, params};
    crud_query_and_respond(&a->crud, req, &stmt, 200, "User not found in database");
}

struct user_delete {
    struct auth *a;
    struct gtm_req *req;
    const char *user;
};

static void user_deleted(void *arg, const struct gtm_pg_result *res)
{
    struct user_delete *d = arg;
    const struct gtm_host *h = d->a->crud.host;
    if (h->pg_status(res) == GTM_OK) {
        auth_forget_keys_of(d->a, d->user);
    }
    if (h->req_gone(d->req)) {
        return;
    }
    if (h->pg_status(res) != GTM_OK) {
        h->respond_pg_error(d->req, res);
    } else if (h->pg_affected(res, 5) == 0) {
        h->respond_error(d->req, 404, "User not found in database");
    } else {
        h->respond_json(d->req, 200, json_pack("{ss ss}", "message", "User successfully deleted from database",
                                               "user_id", d->user));
    }
}

void neon_delete_user(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    struct user_delete *d = h->req_alloc(req, sizeof *d);
    const char **params = h->req_alloc(req, sizeof *params);
    if (!d || !params) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    *d = (struct user_delete){a, req, user};
    params[0] = user;
    /* Everything the user owns, children first: the foreign keys do not cascade. */
    static const char del_campaigns[] =
        "DELETE FROM campaigns WHERE account_id IN (SELECT a.id FROM accounts a JOIN companies c ON c.id = a.company_id "
        "WHERE c.user_id = $1::uuid) OR persona_id IN (SELECT p.id FROM personas p JOIN accounts a ON a.id = p.account_id "
        "JOIN companies c ON c.id = a.company_id WHERE c.user_id = $1::uuid)";
    static const char del_personas[] =
        "DELETE FROM personas WHERE account_id IN (SELECT a.id FROM accounts a JOIN companies c ON c.id = a.company_id "
        "WHERE c.user_id = $1::uuid)";
    static const char del_accounts[] =
        "DELETE FROM accounts WHERE company_id IN (SELECT id FROM companies WHERE user_id = $1::uuid)";
    static const char del_companies[] = "DELETE FROM companies WHERE user_id = $1::uuid";
    static const char del_keys[] = "DELETE FROM gtm_api_keys WHERE user_id = $1::uuid";
    static const char del_user[] = "DELETE FROM users WHERE id = $1::uuid";
    const struct gtm_pg_stmt stmts[] = {
        {del_campaigns, 1, params}, {del_personas, 1, params}, {del_accounts, 1, params},
        {del_companies, 1, params}, {del_keys, 1, params},     {del_user, 1, params},
    };
    if (h->pg_tx(a->crud.self, req, stmts, 6, user_deleted, d) != 0) {
        h->respond_error(req, 500, "Internal server error");
    }
}

void neon_logout(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    /* the session's token is no longer taken on trust from the cache */
    const char *authz = h->req_header(req, "authorization");
    if (authz && strncmp(authz, "Bearer ", 7) == 0) {
        unsigned char hash[32];
        const char *token = authz + 7;
        auth_hash(a, token, strcspn(token, " "), hash);
        struct auth_cache_entry *e = auth_cache_find(a->tokens, hash, h->now_ms());
        if (e) {
            e->valid_until_ms = 0;
        }
    }
    h->respond_json(req, 200, json_pack("{ss ss}", "message", "Logout successful, caches cleared", "user_id", user));
}
