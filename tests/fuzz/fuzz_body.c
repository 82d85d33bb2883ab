/* libFuzzer target: JSON request bodies through the routes that take one.
 *
 * The same in-process worker as fuzz_http, with the real company, account,
 * persona, campaign and auth modules, and fuzz_hooks standing in for
 * authentication and rate limiting (so every body reaches its module).  The
 * input is one selector byte and the body:
 *   bits 0-4   the route (modulo the table below)
 *   bits 5-6   Content-Type: application/json (0, 1), a +json type with
 *              parameters (2), text/plain (3)
 *   bit 7      Accept: text/event-stream (generate routes stream)
 * The request is sent whole with Connection: close.  There is no database
 * and no LLM provider, so a body that passes validation ends in 503 (or a
 * streamed error); what must hold:
 *   - exactly one complete HTTP/1.1 answer, then a FIN;
 *   - 422 carries {"detail": [ {type, loc, msg, input}, ... ]}, upstream's
 *     shape, with loc a non-empty list; other errors {"detail": "..."};
 *   - never a 500, never a status outside what these routes answer (200
 *     only for a stream, or for /api/auth/validate's {"valid": false} on a
 *     key that cannot be one; 501 only for signup, as upstream). */
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
    const char *path;
} routes[] = {
    {"POST", "/api/companies"},
    {"PUT", "/api/companies/" ID},
    {"POST", "/api/companies/generate-ai"},
    {"POST", "/demo/companies/generate-ai"},
    {"POST", "/api/accounts?company_id=" ID},
    {"PUT", "/api/accounts/" ID},
    {"POST", "/api/accounts/generate-ai"},
    {"POST", "/demo/accounts/generate-ai"},
    {"POST", "/api/personas?account_id=" ID},
    {"PUT", "/api/personas/" ID},
    {"POST", "/api/personas/generate-ai"},
    {"POST", "/demo/personas/generate-ai"},
    {"POST", "/api/campaigns?account_id=" ID "&persona_id=" ID},
    {"PUT", "/api/campaigns/" ID},
    {"POST", "/api/campaigns/generate-ai"},
    {"POST", "/demo/campaigns/generate-ai"},
    {"POST", "/api/campaigns/positioning"},
    {"POST", "/api/auth/validate"},
    {"POST", "/api/auth/signup"},
    {"POST", "/api/auth/api-keys"},
    {"POST", "/api/neon-auth/sync-user"},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned route = (data[0] & 31u) % N_ROUTES;
    const char *ct = content_types[(data[0] >> 5) & 3];
    bool sse = data[0] & 0x80;
    const uint8_t *body = data + 1;
    size_t blen = size - 1;

    static char *req;
    static size_t req_cap;
    size_t need = blen + 512;
    if (need > req_cap) {
        free(req);
        req_cap = need * 2;
        req = malloc(req_cap);
        if (!req) {
            abort();
        }
    }
    int head = snprintf(req, req_cap,
                        "%s %s HTTP/1.1\r\nHost: fuzz.test\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n",
                        routes[route].method, routes[route].path, ct, sse ? "Accept: text/event-stream\r\n" : "",
                        blen);
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
    } else if (status == 200 && !sse && strcmp(routes[route].path, "/api/auth/validate") == 0) {
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
    } else {
        char why[64];
        snprintf(why, sizeof why, "unexpected status %d", status);
        free(resp.body);
        fuzz_fail(why, req, len, &reply);
    }
    free(resp.body);
    return 0;
}
