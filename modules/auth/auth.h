/* auth: who is calling.  Stack Auth JWTs (ES256/RS256 against the project's
 * JWKS) and gtmd API keys (bls_...), the authenticate hook every
 * GTM_ROUTE_AUTH route runs, and the identity routes. */
#ifndef GTM_AUTH_H
#define GTM_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "crud.h"

#define AUTH_CACHE_SLOTS 4096          /* verified tokens and keys, direct-mapped */
#define AUTH_JWKS_MIN_REFRESH_MS 60000 /* an unknown kid refetches at most once a minute */
#define AUTH_KEY_TTL_MS 10000          /* how long a checked API key is believed */
#define AUTH_LAST_USED_FLUSH_MS 60000  /* last_used_at is written at most this often */
#define AUTH_LAST_USED_MAX 256

struct auth_cache_entry {
    unsigned char hash[32];            /* SHA-256 of the credential */
    char user[37];
    char role[24];
    char key_id[37];                   /* API keys only */
    int64_t valid_until_ms;
};

struct auth_waiter {
    struct gtm_req *req;
    struct auth_waiter *next;
};

struct auth {
    struct crud_ctx crud;              /* host, self: first, so crud helpers take &a->crud */
    const char *project_id;            /* STACK_PROJECT_ID, or NULL: JWTs are then refused with 503 */
    char jwks_url[512];
    char issuer[512];
    struct gtm_jwks *jwks;
    int64_t jwks_fetched_ms;           /* last fetch attempt */
    bool jwks_fetching;
    struct auth_waiter *waiters;       /* requests waiting for the key set */
    struct auth_cache_entry tokens[AUTH_CACHE_SLOTS];
    struct auth_cache_entry keys[AUTH_CACHE_SLOTS];
    char last_used[AUTH_LAST_USED_MAX][37];
    unsigned n_last_used;
    int64_t last_used_flushed_ms;
};

/* One 401 with the upstream's wording for the route family (/api/neon-auth
 * speaks differently), and WWW-Authenticate. */
void auth_unauthorized(struct auth *a, struct gtm_req *req, const char *why);

/* auth_jwt.c */
int auth_jwt(struct auth *a, struct gtm_req *req, const char *token, size_t len);
void auth_jwt_fini(struct auth *a);

/* auth_keys.c */
int auth_api_key(struct auth *a, struct gtm_req *req, const char *key);
void auth_key_create(void *state, struct gtm_req *req);
void auth_key_delete(void *state, struct gtm_req *req);
void auth_profile(void *state, struct gtm_req *req);
void auth_validate(void *state, struct gtm_req *req);
void auth_signup(void *state, struct gtm_req *req);
void auth_forget_keys_of(struct auth *a, const char *user);

/* auth_identity.c */
void neon_profile(void *state, struct gtm_req *req);
void neon_sync_user(void *state, struct gtm_req *req);
void neon_delete_user(void *state, struct gtm_req *req);
void neon_logout(void *state, struct gtm_req *req);

/* The direct-mapped caches. */
struct auth_cache_entry *auth_cache_find(struct auth_cache_entry *slots, const unsigned char hash[32], int64_t now);
void auth_cache_put(struct auth_cache_entry *slots, const unsigned char hash[32], const char *user, const char *role,
                    const char *key_id, int64_t valid_until_ms);
void auth_hash(struct auth *a, const char *s, size_t len, unsigned char out[32]);

#endif
