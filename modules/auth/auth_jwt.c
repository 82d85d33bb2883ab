/* auth: Stack Auth JWTs.  The key set is fetched through the host on first
 * need and again (at most once a minute) when a token names an unknown kid;
 * requests that arrive meanwhile wait for that one fetch.  A verified token is
 * remembered until it expires, so its next request costs no signature check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

/* Checks the claims; NULL when good, else the reason for the 401. */
static const char *check_claims(struct auth *a, json_t *claims, int64_t now_ms, const char **sub)
{
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_number(exp)) {
        return "Token has no expiry (exp).";
    }
    if (json_number_value(exp) * 1000.0 < (double)now_ms) {
        return "Signature has expired.";
    }
    json_t *nbf = json_object_get(claims, "nbf");
    if (nbf && (!json_is_number(nbf) || json_number_value(nbf) * 1000.0 > (double)now_ms)) {
        return "The token is not yet valid (nbf)";
    }
    json_t *aud = json_object_get(claims, "aud");
    if (aud) {
        bool ok = false;
        if (json_is_string(aud)) {
            ok = strcmp(json_string_value(aud), a->project_id) == 0;
        } else if (json_is_array(aud)) {
            size_t i;
            json_t *v;
            json_array_foreach(aud, i, v) {
                ok |= json_is_string(v) && strcmp(json_string_value(v), a->project_id) == 0;
            }
        }
        if (!ok) {
            return "Invalid audience";
        }
    }
    json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), a->issuer) != 0) {
        return "Invalid issuer";
    }
    json_t *s = json_object_get(claims, "sub");
    if (!json_is_string(s) || !*json_string_value(s)) {
        return "Token has no subject (sub).";
    }
    *sub = json_string_value(s);
    return NULL;
}

/* Verifies with the current key set and answers or admits; returns the hook result. */
static int verify_now(struct auth *a, struct gtm_req *req, const char *token, size_t len)
{
    const struct gtm_host *h = a->crud.host;
    json_t *claims = NULL;
    char why[256];
    int rc = h->jwt_verify(a->jwks, token, len, &claims, why, sizeof why);
    switch (rc) {
    case 0:
        break;
    case -3:
        auth_unauthorized(a, req, "key not found");
        return GTM_HOOK_DONE;
    case -4:
        auth_unauthorized(a, req, "The specified alg value is not allowed");
        return GTM_HOOK_DONE;
    case -5:
        auth_unauthorized(a, req, "Signature verification failed.");
        return GTM_HOOK_DONE;
    case -2:
        auth_unauthorized(a, req, "Token has no key id (kid).");
        return GTM_HOOK_DONE;
    default:
        auth_unauthorized(a, req, "Error decoding token headers.");
        return GTM_HOOK_DONE;
    }
    int64_t now = h->now_ms();
    const char *sub = NULL;
    const char *bad = check_claims(a, claims, now, &sub);
    if (bad) {
        json_decref(claims);
        auth_unauthorized(a, req, bad);
        return GTM_HOOK_DONE;
    }
    if (!crud_is_uuid(sub)) {
        /* Stack's subjects are UUIDs; users.id is one */
        json_decref(claims);
        h->respond_error(req, 400, "Invalid user ID format");
        return GTM_HOOK_DONE;
    }
    unsigned char hash[32];
    auth_hash(a, token, len, hash);
    auth_cache_put(a->tokens, hash, sub, "user", NULL,
                   (int64_t)(json_number_value(json_object_get(claims, "exp")) * 1000.0));
    h->req_set_user(req, sub, "user");
    json_decref(claims);
    return GTM_HOOK_CONTINUE;
}

static const char *bearer_token(struct auth *a, struct gtm_req *req, size_t *len)
{
    const char *authz = a->crud.host->req_header(req, "authorization");
    const char *token = authz + 7;
    *len = strcspn(token, " ");
    return token;
}

static void jwks_fetched(void *arg, const struct gtm_http_result *res)
{
    struct auth *a = arg;
    const struct gtm_host *h = a->crud.host;
    a->jwks_fetching = false;
    bool ok = false;
    if (res->error == 0 && res->status == 200) {
        char err[256];
        struct gtm_jwks *ks = h->jwks_parse(res->body, res->body_len, err, sizeof err);
        if (ks) {
            if (a->jwks) {
                h->jwks_free(a->jwks);
            }
            a->jwks = ks;
            ok = true;
        } else {
            h->log(a->crud.self, NULL, GTM_LOG_ERROR, "JWKS from %s unusable: %s", a->jwks_url, err);
        }
    } else {
        h->log(a->crud.self, NULL, GTM_LOG_ERROR, "JWKS fetch from %s failed: %s (status %ld)", a->jwks_url,
               res->error ? res->error_text : "unexpected status", res->status);
    }
    struct auth_waiter *w = a->waiters;
    a->waiters = NULL;
    while (w) {
        struct auth_waiter *next = w->next;
        struct gtm_req *req = w->req;
        int result = GTM_HOOK_DONE;
        if (!h->req_gone(req)) {
            if (a->jwks) {
                size_t len;
                const char *token = bearer_token(a, req, &len);
                result = verify_now(a, req, token, len);
            } else if (!ok) {
                h->set_header(req, "retry-after", "5");
                h->respond_error(req, 503, "Authentication keys are unavailable, try again shortly");
            }
        }
        free(w);
        h->hook_done(req, result);
        w = next;
    }
}

/* Queues req behind a key-set fetch, starting one if none is running. */
static int wait_for_jwks(struct auth *a, struct gtm_req *req)
{
    const struct gtm_host *h = a->crud.host;
    struct auth_waiter *w = malloc(sizeof *w);
    if (!w) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    if (!a->jwks_fetching) {
        static const char *const headers[] = {"Accept: application/json", NULL};
        struct gtm_http_call call = {
            .size = sizeof call, .url = a->jwks_url, .headers = headers, .timeout_ms = 5000,
            .max_response = 256 * 1024,
        };
        if (h->http_call(a->crud.self, NULL, &call, jwks_fetched, a) != 0) {
            free(w);
            h->set_header(req, "retry-after", "5");
            h->respond_error(req, 503, "Authentication keys are unavailable, try again shortly");
            return GTM_HOOK_DONE;
        }
        a->jwks_fetching = true;
        a->jwks_fetched_ms = h->now_ms();
    }
    w->req = req;
    w->next = a->waiters;
    a->waiters = w;
    return GTM_HOOK_ASYNC;
}

int auth_jwt(struct auth *a, struct gtm_req *req, const char *token, size_t len)
{
    const struct gtm_host *h = a->crud.host;
    if (!a->project_id) {
        h->respond_error(req, 503, "Signed-in requests are not available: set STACK_PROJECT_ID");
        return GTM_HOOK_DONE;
    }
    int64_t now = h->now_ms();
    unsigned char hash[32];
    auth_hash(a, token, len, hash);
    struct auth_cache_entry *hit = auth_cache_find(a->tokens, hash, now);
    if (hit) {
        h->req_set_user(req, hit->user, hit->role);
        return GTM_HOOK_CONTINUE;
    }
    char kid[128];
    int peek = h->jwt_peek_kid(token, len, kid, sizeof kid);
    if (peek == -2) {
        auth_unauthorized(a, req, "Token has no key id (kid).");
        return GTM_HOOK_DONE;
    }
    if (peek != 0) {
        auth_unauthorized(a, req, "Error decoding token headers.");
        return GTM_HOOK_DONE;
    }
    if (a->jwks_fetching) {
        return wait_for_jwks(a, req);
    }
    if (!a->jwks || (!h->jwks_has_kid(a->jwks, kid) && now - a->jwks_fetched_ms >= AUTH_JWKS_MIN_REFRESH_MS)) {
        return wait_for_jwks(a, req);
    }
    return verify_now(a, req, token, len);
}

void auth_jwt_fini(struct auth *a)
{
    if (a->jwks) {
        a->crud.host->jwks_free(a->jwks);
        a->jwks = NULL;
    }
}
