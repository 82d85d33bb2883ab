/* auth: the descriptor, settings and the authenticate hook. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

static bool is_neon_route(struct auth *a, struct gtm_req *req)
{
    return strncmp(a->crud.host->req_path(req), "/api/neon-auth/", 15) == 0;
}

void auth_unauthorized(struct auth *a, struct gtm_req *req, const char *why)
{
    const struct gtm_host *h = a->crud.host;
    char detail[512];
    bool neon = is_neon_route(a, req);
    if (!why) {
        snprintf(detail, sizeof detail, "%s", neon ? "Missing or invalid authorization header"
                                                   : "Missing or invalid Authorization header");
        h->set_header(req, "www-authenticate", "Bearer");
    } else if (strcmp(why, "key not found") == 0) {
        snprintf(detail, sizeof detail, "%s", neon ? "Public key not found for token." : "Invalid token: key not found");
        h->set_header(req, "www-authenticate", "Bearer error=\"invalid_token\"");
    } else {
        snprintf(detail, sizeof detail, "%s%s", neon ? "Invalid Stack Auth token: " : "Invalid token: ", why);
        h->set_header(req, "www-authenticate", "Bearer error=\"invalid_token\"");
    }
    h->respond_error(req, 401, detail);
}

void auth_hash(struct auth *a, const char *s, size_t len, unsigned char out[32])
{
    char hex[65];
    a->crud.host->sha256_hex(s, len, hex);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
}

static size_t slot_of(const unsigned char hash[32])
{
    size_t v;
    memcpy(&v, hash, sizeof v);
    return v % AUTH_CACHE_SLOTS;
}

struct auth_cache_entry *auth_cache_find(struct auth_cache_entry *slots, const unsigned char hash[32], int64_t now)
{
    struct auth_cache_entry *e = &slots[slot_of(hash)];
    if (e->valid_until_ms > now && memcmp(e->hash, hash, 32) == 0) {
        return e;
    }
    return NULL;
}

void auth_cache_put(struct auth_cache_entry *slots, const unsigned char hash[32], const char *user, const char *role,
                    const char *key_id, int64_t valid_until_ms)
{
    struct auth_cache_entry *e = &slots[slot_of(hash)];
    memcpy(e->hash, hash, 32);
    snprintf(e->user, sizeof e->user, "%s", user);
    snprintf(e->role, sizeof e->role, "%s", role ? role : "user");
    snprintf(e->key_id, sizeof e->key_id, "%s", key_id ? key_id : "");
    e->valid_until_ms = valid_until_ms;
}

static int auth_authenticate(void *state, struct gtm_req *req)
{
    struct auth *a = state;
    const struct gtm_host *h = a->crud.host;
    const char *authz = h->req_header(req, "authorization");
    const char *token = NULL;
    size_t len = 0;
    if (authz && strncmp(authz, "Bearer ", 7) == 0) {
        token = authz + 7;
        len = strcspn(token, " ");
    }
    if (token && len > 4 && strncmp(token, "bls_", 4) == 0) {
        char *key = h->req_alloc(req, len + 1);
        if (!key) {
            h->respond_error(req, 500, "Internal server error");
            return GTM_HOOK_DONE;
        }
        memcpy(key, token, len);
        key[len] = '\0';
        return auth_api_key(a, req, key);
    }
    if (!token || len == 0) {
        const char *x_key = h->req_header(req, "x-api-key");
        if (x_key && *x_key) {
            return auth_api_key(a, req, x_key);
        }
        auth_unauthorized(a, req, NULL);
        return GTM_HOOK_DONE;
    }
    return auth_jwt(a, req, token, len);
}

static const struct gtm_route routes[] = {
    {GTM_POST, "/api/auth/api-keys", auth_key_create, GTM_ROUTE_AUTH, NULL},
    {GTM_DELETE, "/api/auth/api-keys/{key_id}", auth_key_delete, GTM_ROUTE_AUTH, NULL},
    {GTM_GET, "/api/auth/profile", auth_profile, GTM_ROUTE_AUTH, NULL},
    {GTM_POST, "/api/auth/validate", auth_validate, 0, NULL},
    {GTM_POST, "/api/auth/signup", auth_signup, 0, NULL},
    {GTM_GET, "/api/neon-auth/profile", neon_profile, GTM_ROUTE_AUTH, NULL},
    {GTM_POST, "/api/neon-auth/sync-user", neon_sync_user, GTM_ROUTE_AUTH, NULL},
    {GTM_DELETE, "/api/neon-auth/user", neon_delete_user, GTM_ROUTE_AUTH, NULL},
    {GTM_POST, "/api/neon-auth/logout", neon_logout, GTM_ROUTE_AUTH, NULL},
};

static int auth_init(const struct gtm_host *host, struct gtm_mod *self, void **state)
{
    if (!GTM_HOST_HAS(host, now_ms)) {
        return GTM_EINVAL;   /* needs ABI 1.1 */
    }
    struct auth *a = calloc(1, sizeof *a);
    if (!a) {
        return GTM_ENOMEM;
    }
    a->crud.host = host;
    a->crud.self = self;
    const char *project = host->config("STACK_PROJECT_ID");
    a->project_id = project && *project ? project : NULL;
    const char *url = host->config("STACK_JWKS_URL");
    const char *iss = host->config("STACK_ISSUER");
    if (a->project_id) {
        if (url && *url) {
            snprintf(a->jwks_url, sizeof a->jwks_url, "%s", url);
        } else {
            snprintf(a->jwks_url, sizeof a->jwks_url,
                     "https://api.stack-auth.com/api/v1/projects/%s/.well-known/jwks.json", a->project_id);
        }
        if (iss && *iss) {
            snprintf(a->issuer, sizeof a->issuer, "%s", iss);
        } else {
            snprintf(a->issuer, sizeof a->issuer, "https://api.stack-auth.com/api/v1/projects/%s", a->project_id);
        }
    } else {
        host->log(self, NULL, GTM_LOG_WARN,
                  "STACK_PROJECT_ID is not set: signed-in (JWT) requests answer 503; API keys still work");
    }
    a->last_used_flushed_ms = host->now_ms();
    *state = a;
    return 0;
}

static void auth_fini(void *state)
{
    struct auth *a = state;
    auth_jwt_fini(a);
    free(a);
}

static const struct gtm_module desc = {
    GTM_MODULE_STAMP,
    .name = "auth",
    .version = GTM_MODULE_VERSION,
    .flags = GTM_MODULE_UNLOADABLE,
    .init = auth_init,
    .fini = auth_fini,
    .routes = routes,
    .n_routes = sizeof routes / sizeof routes[0],
    .authenticate = auth_authenticate,
    .openapi = gtm_module_openapi,
};

GTM_EXPORT const struct gtm_module *gtm_module_v1(void)
{
    return &desc;
}
