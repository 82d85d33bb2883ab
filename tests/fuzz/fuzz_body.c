/* libFuzzer target: request validation, JSON bodies and the path and query
 * arguments of the routes (core/http/validate.c through the modules).
 *
 * The same in-process worker as fuzz_http, with the real company, account,
 * persona, campaign and auth modules, and fuzz_hooks standing in for
 * authentication and rate limiting (so every request reaches its module).
 * The input is one selector byte and the rest:
 *   bits 0-4   the route (table below).  Routes 0-20 take the rest as their
 *              body.  Routes 21-31 take it as their {id} or query string
 *              (bytes a request line cannot carry are percent-encoded, so
 *              the server's decoding sees them), with a valid body where
 *              the route needs one
 *   bits 5-6   Content-Type: application/json (0, 1), a +json type with
 *              parameters (2), text/plain (3)
 *   bit 7      Accept: text/event-stream (generate routes stream)
 * The request is sent whole with Connection: close.  There is no database
 * and no LLM provider, so a request that passes validation ends in 503 (or a
 * streamed error); what must hold:
 *   - exactly one complete HTTP/1.1 answer, then a FIN;
 *   - 422 carries {"detail": [ {type, loc, msg, input}, ... ]}, upstream's
 *     shape, with loc a list starting with body, path or query; other
 *     errors {"detail": "..."};
 *   - never a 500, never a status outside what these routes answer (200
 *     only for a stream, or for /api/auth/validate's {"valid": false} on a
 *     key that cannot be one; 501 only for signup, as upstream; 307, 404 and
 *     405 only when the fuzzed part changed which route matches). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ID "3f2c9a4e-8b1d-4e6f-9a2b-5c7d8e9f0a1b"

static const struct {
    const char *method;
    const char *path;    /* for routes 21-31: the part before the fuzzed one */
    const char *body;    /* for routes 21-31: the body sent, or NULL */
} routes[32] = {
    {"POST", "/api/companies", NULL},
    {"PUT", "/api/companies/" ID, NULL},
    {"POST", "/api/companies/generate-ai", NULL},
    {"POST", "/demo/companies/generate-ai", NULL},
    {"POST", "/api/accounts?company_id=" ID, NULL},
    {"PUT", "/api/accounts/" ID, NULL},
    {"POST", "/api/accounts/generate-ai", NULL},
    {"POST", "/demo/accounts/generate-ai", NULL},
    {"POST", "/api/personas?account_id=" ID, NULL},
    {"PUT", "/api/personas/" ID, NULL},
    {"POST", "/api/personas/generate-ai", NULL},
    {"POST", "/demo/personas/generate-ai", NULL},
    {"POST", "/api/campaigns?account_id=" ID "&persona_id=" ID, NULL},
    {"PUT", "/api/campaigns/" ID, NULL},
    {"POST", "/api/campaigns/generate-ai", NULL},
    {"POST", "/demo/campaigns/generate-ai", NULL},
    {"POST", "/api/campaigns/positioning", NULL},
    {"POST", "/api/auth/validate", NULL},
    {"POST", "/api/auth/signup", NULL},
    {"POST", "/api/auth/api-keys", NULL},
    {"POST", "/api/neon-auth/sync-user", NULL},
    /* the fuzzed part is a path parameter or a query string */
    {"GET", "/api/companies/", NULL},
    {"GET", "/api/accounts/", NULL},
    {"DELETE", "/api/personas/", NULL},
    {"GET", "/api/campaigns/", NULL},
    {"PUT", "/api/companies/", "{\"company_name\":\"Acme\"}"},
    {"DELETE", "/api/auth/api-keys/", NULL},
    {"GET", "/api/companies?", NULL},
    {"GET", "/api/accounts?", NULL},
    {"GET", "/api/campaigns?", NULL},
    {"POST", "/api/personas?", "{\"name\":\"CFO\",\"data\":{}}"},
    {"POST", "/api/campaigns?", "{\"name\":\"Q3\",\"type\":\"email\",\"data\":{}}"},
};
#define BODY_ROUTES 21

static const char *const content_types[4] = {
    "application/json",
    "application/json",
    "application/vnd.gtm+json; charset=utf-8",
    "text/plain",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_server_start(FUZZ_MODULE_DIR, NULL);
    return 0;
}

static void check_422(const char *body, size_t body_len, const char *in, size_t len, const struct fuzz_reply *reply)
{
    json_t *doc = json_loadb(body, body_len, JSON_ALLOW_NUL, NULL);
    json_t *detail = json_object_get(doc, "detail");
    if (!json_is_array(detail) || json_array_size(detail) == 0) {
        fuzz_fail("422 without a non-empty detail list", in, len, reply);
    }
    size_t i;
    json_t *entry;
    json_array_foreach(detail, i, entry) {
        json_t *loc = json_object_get(entry, "loc");
        if (!json_is_string(json_object_get(entry, "type")) || !json_is_string(json_object_get(entry, "msg")) ||
            !json_is_array(loc) || json_array_size(loc) == 0 || !json_object_get(entry, "input")) {
            fuzz_fail("a 422 entry lacks type, msg, a non-empty loc or input", in, len, reply);
        }
        json_t *where = json_array_get(loc, 0);
        if (!json_is_string(where) || (strcmp(json_string_value(where), "body") != 0 &&
                                       strcmp(json_string_value(where), "path") != 0 &&
                                       strcmp(json_string_value(where), "query") != 0)) {
            fuzz_fail("a 422 entry's loc does not start with body, path or query", in, len, reply);
        }
    }
    json_decref(doc);
}

/* The bytes a request target may carry as they are; others are
 * percent-encoded ('%' itself is not, so inputs can spell their own escapes,
 * broken ones included). */
static bool target_safe(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~!$&'()*+,;=:@/?%", c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned route = data[0] & 31u;
    const char *ct = content_types[(data[0] >> 5) & 3];
    bool sse = data[0] & 0x80;
    const uint8_t *rest = data + 1;
    size_t rlen = size - 1;

    static char *req;
    static size_t req_cap;
    size_t need = rlen * 3 + 1024;
    if (need > req_cap) {
        free(req);
        req_cap = need * 2;
        req = malloc(req_cap);
        if (!req) {
            abort();
        }
    }
    const char *body;
    size_t blen;
    int head;
    if (route < BODY_ROUTES) {
        body = (const char *)rest;
        blen = rlen;
        head = snprintf(req, req_cap, "%s %s HTTP/1.1\r\n", routes[route].method, routes[route].path);
    } else {
        body = routes[route].body ? routes[route].body : "";
        blen = strlen(body);
        head = snprintf(req, req_cap, "%s %s", routes[route].method, routes[route].path);
        static const char hex[] = "0123456789ABCDEF";
        for (size_t i = 0; i < rlen; i++) {
            unsigned char c = rest[i];
            if (target_safe(c)) {
                req[head++] = (char)c;
            } else {
                req[head++] = '%';
                req[head++] = hex[c >> 4];
                req[head++] = hex[c & 15];
            }
        }
        head += snprintf(req + head, req_cap - (size_t)head, " HTTP/1.1\r\n");
    }
    head += snprintf(req + head, req_cap - (size_t)head,
                     "Host: fuzz.test\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n", ct,
                     sse ? "Accept: text/event-stream\r\n" : "", blen);
    memcpy(req + head, body, blen);
    size_t len = (size_t)head + blen;

    static struct fuzz_reply reply;
    struct fuzz_send how = {.half_close = false};
    fuzz_exchange(req, len, &how, &reply);
    if (reply.reset || !reply.eof) {
        fuzz_fail("the server did not end the connection with a FIN", req, len, &reply);
    }
    static struct fuzz_requests reqs;
    fuzz_parse_requests(req, len, &reqs);
    static struct fuzz_responses resp;
    if (fuzz_parse_responses(&reply, &reqs, &resp) < 0) {
        free(resp.body);
        fuzz_fail(resp.why, req, len, &reply);
    }
    if (resp.n != 1) {
        free(resp.body);
        fuzz_fail("not exactly one answer", req, len, &reply);
    }
    int status = resp.r[0].status;
    const char *body_text = resp.body ? resp.body : "";
    if (status == 422) {
        check_422(body_text, resp.body_len, req, len, &reply);
    } else if (status == 200 && sse && strncmp(resp.r[0].content_type, "text/event-stream", 17) == 0) {
        /* a stream of progress events that ends with the error event */
        if (!strstr(body_text, "event: error\n")) {
            free(resp.body);
            fuzz_fail("a stream that does not end with an error event", req, len, &reply);
        }
    } else if (status == 400 || status == 503 || status == 502 || status == 504) {
        json_t *doc = json_loadb(body_text, resp.body_len, JSON_ALLOW_NUL, NULL);
        if (!json_is_string(json_object_get(doc, "detail"))) {
            json_decref(doc);
            free(resp.body);
            fuzz_fail("an error without a string detail", req, len, &reply);
        }
        json_decref(doc);
    } else if (status == 200 && strcmp(routes[route].path, "/api/auth/validate") == 0 &&
               strncmp(resp.r[0].content_type, "application/json", 16) == 0) {
        /* a key that cannot be one is answered without the database */
        json_t *doc = json_loadb(body_text, resp.body_len, 0, NULL);
        if (!json_is_boolean(json_object_get(doc, "valid"))) {
            json_decref(doc);
            free(resp.body);
            fuzz_fail("a validation answer without a boolean valid", req, len, &reply);
        }
        json_decref(doc);
    } else if (status == 501 && strcmp(routes[route].path, "/api/auth/signup") == 0) {
        /* as upstream: signup is not implemented with Stack Auth */
    } else if (route >= BODY_ROUTES && status == 307) {
        /* a trailing slash: redirected to the route without it */
    } else if (route >= BODY_ROUTES && (status == 404 || status == 405)) {
        json_t *doc = json_loadb(body_text, resp.body_len, 0, NULL);
        if (!json_is_string(json_object_get(doc, "detail"))) {
            json_decref(doc);
            free(resp.body);
            fuzz_fail("a 404/405 without a string detail", req, len, &reply);
        }
        json_decref(doc);
    } else {
        char why[64];
        snprintf(why, sizeof why, "unexpected status %d", status);
        free(resp.body);
        fuzz_fail(why, req, len, &reply);
    }
    free(resp.body);
    return 0;
}
