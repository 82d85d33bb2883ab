/* auth: API keys.  A key is "bls_" + 43 base64url characters (32 random
 * bytes); only its SHA-256 is stored.  A checked key is believed for a few
 * seconds per worker, and its last_used_at is written at most once a minute. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define KEY_BODY_CHARS 43
#define KEY_PREFIX_CHARS 12

static bool key_well_formed(const char *key)
{
    if (strncmp(key, "bls_", 4) != 0 || strlen(key) != 4 + KEY_BODY_CHARS) {
        return false;
    }
    for (const char *p = key + 4; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_')) {
            return false;
        }
    }
    return true;
}

static void make_key(const unsigned char raw[32], char out[4 + KEY_BODY_CHARS + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = out;
    memcpy(o, "bls_", 4);
    o += 4;
    unsigned acc = 0;
    int bits = 0;
    for (int i = 0; i < 32; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            *o++ = alphabet[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits > 0) {
        *o++ = alphabet[(acc << (6 - bits)) & 63];
    }
    *o = '\0';
}

static void last_used_done(void *arg, const struct gtm_pg_result *res)
{
    struct auth *a = arg;
    if (a->crud.host->pg_status(res) != GTM_OK) {
        a->crud.host->log(a->crud.self, NULL, GTM_LOG_WARN, "recording API key use failed: %s",
                          a->crud.host->pg_message(res));
    }
}

/* Writes last_used_at unless this worker already wrote it for this key in the
 * current one-minute window (a->last_used lists the keys written in it). */
static void note_use(struct auth *a, struct auth_cache_entry *e, int64_t now)
{
    if (!e || e->key_id[0] == '\0') {
        return;
    }
    for (unsigned i = 0; i < a->n_last_used; i++) {
        if (strcmp(a->last_used[i], e->key_id) == 0) {
            return;   /* written within the last minute */
        }
    }
    if (now - a->last_used_flushed_ms >= AUTH_LAST_USED_FLUSH_MS) {
        a->n_last_used = 0;
        a->last_used_flushed_ms = now;
    }
    if (a->n_last_used == AUTH_LAST_USED_MAX) {
        return;
    }
    snprintf(a->last_used[a->n_last_used++], 37, "%s", e->key_id);
    static const char sql[] = "UPDATE gtm_api_keys SET last_used_at = gtm_utcnow() WHERE id = $1::uuid";
    const char *params[] = {e->key_id};
    struct gtm_pg_stmt stmt = {sql, 1, params};
    a->crud.host->pg_query(a->crud.self, NULL, &stmt, last_used_done, a);
}

struct key_lookup {
    struct auth *a;
    struct gtm_req *req;
    unsigned char hash[32];
};

static void key_looked_up(void *arg, const struct gtm_pg_result *res)
{
    struct key_lookup *k = arg;
    struct auth *a = k->a;
    const struct gtm_host *h = a->crud.host;
    int result = GTM_HOOK_DONE;
    if (!h->req_gone(k->req)) {
        if (h->pg_status(res) != GTM_OK) {
            h->respond_pg_error(k->req, res);
        } else if (h->pg_ntuples(res, 0) == 0) {
            h->set_header(k->req, "www-authenticate", "Bearer error=\"invalid_token\"");
            h->respond_error(k->req, 401, "Invalid API key");
        } else {
            const char *key_id = h->pg_value(res, 0, 0, 0);
            const char *user = h->pg_value(res, 0, 0, 1);
            const char *role = h->pg_value(res, 0, 0, 2);
            int64_t now = h->now_ms();
            auth_cache_put(a->keys, k->hash, user, role, key_id, now + AUTH_KEY_TTL_MS);
            note_use(a, auth_cache_find(a->keys, k->hash, now), now);
            h->req_set_user(k->req, user, role);
            result = GTM_HOOK_CONTINUE;
        }
    }
    h->hook_done(k->req, result);
}

int auth_api_key(struct auth *a, struct gtm_req *req, const char *key)
{
    const struct gtm_host *h = a->crud.host;
    if (!key_well_formed(key)) {
        h->set_header(req, "www-authenticate", "Bearer error=\"invalid_token\"");
        h->respond_error(req, 401, "Invalid API key");
        return GTM_HOOK_DONE;
    }
    struct key_lookup *k = h->req_alloc(req, sizeof *k);
    if (!k) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    auth_hash(a, key, strlen(key), k->hash);
    int64_t now = h->now_ms();
    struct auth_cache_entry *hit = auth_cache_find(a->keys, k->hash, now);
    if (hit) {
        note_use(a, hit, now);
        h->req_set_user(req, hit->user, hit->role);
        return GTM_HOOK_CONTINUE;
    }
    k->a = a;
    k->req = req;
    char *hex = h->req_alloc(req, 65);
    if (!hex) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    h->sha256_hex(key, strlen(key), hex);
    static const char sql[] =
        "SELECT k.id, k.user_id, coalesce(u.role, 'user') FROM gtm_api_keys k JOIN users u ON u.id = k.user_id "
        "WHERE k.key_hash = $1";
    const char *params[] = {hex};
    struct gtm_pg_stmt stmt = {sql, 1, params};
    if (h->pg_query(a->crud.self, req, &stmt, key_looked_up, k) != 0) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    return GTM_HOOK_ASYNC;
}

/* True when the request presented an API key rather than a session. */
static bool presented_api_key(struct auth *a, struct gtm_req *req)
{
    const char *authz = a->crud.host->req_header(req, "authorization");
    if (authz && strncmp(authz, "Bearer ", 7) == 0) {
        return strncmp(authz + 7, "bls_", 4) == 0;
    }
    return a->crud.host->req_header(req, "x-api-key") != NULL;
}

void auth_key_create(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    if (presented_api_key(a, req)) {
        h->respond_error(req, 403, "API keys can only be created from a signed-in session");
        return;
    }
    const char *name = "API key";
    size_t blen;
    h->req_body(req, &blen);
    if (blen > 0) {
        json_t *body = crud_body_object(&a->crud, req);
        if (body) {
            const char *n = crud_field_str(&a->crud, req, body, "name", false, true, 255, NULL);
            if (n && *n) {
                name = n;
            }
        }
        if (h->fail_if_invalid(req)) {
            return;
        }
    }
    unsigned char raw[32];
    char *key = h->req_alloc(req, 4 + KEY_BODY_CHARS + 1);
    char *hex = h->req_alloc(req, 65);
    char *prefix = h->req_alloc(req, KEY_PREFIX_CHARS + 1);
    if (!key || !hex || !prefix || h->random_bytes(raw, sizeof raw) != 0) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    make_key(raw, key);
    h->sha256_hex(key, strlen(key), hex);
    memcpy(prefix, key, KEY_PREFIX_CHARS);
    prefix[KEY_PREFIX_CHARS] = '\0';
    /* The key goes back once, in this answer; the table keeps its hash. */
    static const char sql[] =
        "WITH u AS (INSERT INTO users (id, created_at, role) VALUES ($1::uuid, gtm_utcnow(), 'user') "
        "           ON CONFLICT (id) DO NOTHING), "
        "k AS (INSERT INTO gtm_api_keys (user_id, name, key_prefix, key_hash) VALUES ($1::uuid, $2, $3, $4) "
        "      RETURNING *) "
        "SELECT json_build_object('id', k.id, 'name', k.name, 'key', $5::text, 'key_prefix', k.key_prefix, "
        "'created_at', gtm_ts(k.created_at), 'last_used_at', NULL)::text FROM k";
    const char *params[] = {user, name, prefix, hex, key};
    struct gtm_pg_stmt stmt = {sql, 5, params};
    crud_query_and_respond(&a->crud, req, &stmt, 201, "User not found");
}

struct key_delete {
    struct auth *a;
    struct gtm_req *req;
};

static void key_deleted(void *arg, const struct gtm_pg_result *res)
{
    struct key_delete *d = arg;
    const struct gtm_host *h = d->a->crud.host;
    if (h->pg_status(res) == GTM_OK && h->pg_ntuples(res, 0) == 1) {
        /* forget it here at once; other workers stop believing it within AUTH_KEY_TTL_MS */
        const char *hex = h->pg_value(res, 0, 0, 0);
        unsigned char hash[32];
        for (int i = 0; i < 32; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            hash[i] = (unsigned char)v;
        }
        struct auth_cache_entry *e = auth_cache_find(d->a->keys, hash, h->now_ms());
        if (e) {
            e->valid_until_ms = 0;
        }
    }
    if (h->req_gone(d->req)) {
        return;
    }
    if (h->pg_status(res) != GTM_OK) {
        h->respond_pg_error(d->req, res);
    } else if (h->pg_ntuples(res, 0) == 0) {
        h->respond_error(d->req, 404, "API key not found");
    } else {
        h->respond_empty(d->req, 204);
    }
}

void auth_key_delete(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    char *id = h->req_alloc(req, 37);
    struct key_delete *d = h->req_alloc(req, sizeof *d);
    if (!id || !d) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    h->arg_uuid(req, "path", "key_id", 1, id);
    if (h->fail_if_invalid(req)) {
        return;
    }
    d->a = a;
    d->req = req;
    static const char sql[] = "DELETE FROM gtm_api_keys WHERE id = $1::uuid AND user_id = $2::uuid RETURNING key_hash";
    const char *params[] = {id, user};
    struct gtm_pg_stmt stmt = {sql, 2, params};
    if (h->pg_query(a->crud.self, req, &stmt, key_deleted, d) != 0) {
        h->respond_error(req, 500, "Internal server error");
    }
}

void auth_profile(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const char *user = crud_user(&a->crud, req);
    if (!user) {
        return;
    }
    static const char sql[] =
        "SELECT json_build_object('user_id', $1::uuid, "
        "'role', coalesce((SELECT role FROM users WHERE id = $1::uuid), 'user'), "
        "'api_keys', (SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'key_prefix', key_prefix, "
        "    'created_at', gtm_ts(created_at), 'last_used_at', gtm_ts(last_used_at)) ORDER BY created_at, id), '[]') "
        "  FROM gtm_api_keys WHERE user_id = $1::uuid))::text";
    const char *params[] = {user};
    struct gtm_pg_stmt stmt = {sql, 1, params};
    crud_query_and_respond(&a->crud, req, &stmt, 200, "User not found");
}

struct key_validate {
    struct auth *a;
    struct gtm_req *req;
};

static void key_validated(void *arg, const struct gtm_pg_result *res)
{
    struct key_validate *v = arg;
    const struct gtm_host *h = v->a->crud.host;
    if (h->req_gone(v->req)) {
        return;
    }
    if (h->pg_status(res) != GTM_OK) {
        h->respond_pg_error(v->req, res);
    } else if (h->pg_ntuples(res, 0) == 0) {
        h->respond_json(v->req, 200, json_pack("{sb}", "valid", 0));
    } else {
        h->respond_json(v->req, 200, json_pack("{sb ss ss}", "valid", 1, "user_id", h->pg_value(res, 0, 0, 0),
                                               "key_prefix", h->pg_value(res, 0, 0, 1)));
    }
}

void auth_validate(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *key = h->req_header(req, "x-api-key");
    size_t blen;
    h->req_body(req, &blen);
    if (!key && blen > 0) {
        json_t *body = crud_body_object(&a->crud, req);
        if (body) {
            key = crud_field_str(&a->crud, req, body, "api_key", true, false, 0, NULL);
        }
    } else if (!key) {
        const char *authz = h->req_header(req, "authorization");
        if (authz && strncmp(authz, "Bearer ", 7) == 0) {
            key = authz + 7;
        }
    }
    if (!key) {
        /* the body's own errors when it had some (they are answered and
         * cleared by the first call), else the missing field */
        if (!h->fail_if_invalid(req)) {
            h->add_error(req, "missing", json_pack("[ss]", "body", "api_key"), "Field required", NULL, NULL);
            h->fail_if_invalid(req);
        }
        return;
    }
    if (h->fail_if_invalid(req)) {
        return;
    }
    if (!key_well_formed(key)) {
        h->respond_json(req, 200, json_pack("{sb}", "valid", 0));
        return;
    }
    struct key_validate *v = h->req_alloc(req, sizeof *v);
    char *hex = h->req_alloc(req, 65);
    if (!v || !hex) {
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    v->a = a;
    v->req = req;
    h->sha256_hex(key, strlen(key), hex);
    static const char sql[] = "SELECT user_id, key_prefix FROM gtm_api_keys WHERE key_hash = $1";
    const char *params[] = {hex};
    struct gtm_pg_stmt stmt = {sql, 1, params};
    if (h->pg_query(a->crud.self, req, &stmt, key_validated, v) != 0) {
        h->respond_error(req, 500, "Internal server error");
    }
}

void auth_signup(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    json_t *body = crud_body_object(&a->crud, req);
    if (body) {
        const char *email = crud_field_str(&a->crud, req, body, "email", true, false, 0, NULL);
        crud_field_str(&a->crud, req, body, "name", false, true, 0, NULL);
        const char *at = email ? strchr(email, '@') : NULL;
        if (email && (!at || at == email || !strchr(at, '.') || strchr(at + 1, '@'))) {
            h->add_error(req, "value_error", json_pack("[ss]", "body", "email"),
                         "value is not a valid email address: An email address must have an @-sign.",
                         json_string(email), json_pack("{ss}", "reason", "An email address must have an @-sign."));
        }
    }
    if (h->fail_if_invalid(req)) {
        return;
    }
    h->respond_error(req, 501, "Signup functionality is not yet implemented using Stack Auth JWTs.");
}

void auth_forget_keys_of(struct auth *a, const char *user)
{
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++) {
        if (strcmp(a->keys[i].user, user) == 0) {
            a->keys[i].valid_until_ms = 0;
        }
        if (strcmp(a->tokens[i].user, user) == 0) {
            a->tokens[i].valid_until_ms = 0;
        }
    }
}
