/* libFuzzer target: what OpenAI, Anthropic and Gemini send back, through
 * each provider's parse (core/llm): the answer's text found and read as
 * JSON, refusals, truncation, error bodies, statuses and retry hints.
 * Input: three bytes, then the response body.
 *   byte 0     the provider: OpenAI, Anthropic, Gemini (modulo 3)
 *   byte 1     bits 0-4: the status (table below; 0 is a transport error);
 *              bit 5: no Content-Type
 *   byte 2     bit 7: the body begins with "name: value" header lines and
 *              an empty line; otherwise bits 0-2 pick a Retry-After, bits
 *              3-4 an x-should-retry and bits 5-6 a retry-after-ms
 * What must hold: an outcome of the four; an output exactly when the outcome
 * is OK, and only for a 2xx without transport error; a retry hint that is
 * absent (< 0) or a finite number of seconds; a detail that is a string;
 * timed_out only for a timeout. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gtm/module.h"
#include "llm/llm_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 8

struct fake {
    struct gtm_http_result res;
    const char *names[MAX_HEADERS];
    const char *values[MAX_HEADERS];
    unsigned n;
};

static const char *fake_header(const struct gtm_http_result *res, const char *name)
{
    const struct fake *f = (const struct fake *)res;
    for (unsigned i = 0; i < f->n; i++) {
        if (strcasecmp(f->names[i], name) == 0) {
            return f->values[i];
        }
    }
    return NULL;
}

static void fail(const char *why, const uint8_t *in, size_t len, const struct llm_answer *a)
{
    char *out = a && a->output ? json_dumps(a->output, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fprintf(stderr, "\n==fuzz== %s\n==fuzz== input (%zu bytes): %.*s\n==fuzz== outcome %d, detail %.200s, output %.1000s\n",
            why, len, (int)(len > 2000 ? 2000 : len), (const char *)in, a ? (int)a->outcome : -1,
            a && memchr(a->detail, 0, sizeof a->detail) ? a->detail : "-", out ? out : "-");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    static const struct llm_provider_ops *const ops[3] = {&llm_openai_ops, &llm_anthropic_ops, &llm_gemini_ops};
    static const long statuses[32] = {200, 200, 200, 200, 200, 200, 200, 200, 201, 400, 401, 402, 403, 404, 408, 409,
                                      413, 422, 429, 429, 500, 502, 503, 504, 529, 520, 302, 204, 0, 0, 0, 0};
    static const int errors[4] = {GTM_ETIMEDOUT, GTM_ECONNREFUSED, GTM_ETOOBIG, GTM_EIO};
    static const char *const retry_after[8] = {
        NULL, "0", "17", "2.5", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT", "-3", "1e400",
    };
    static const char *const should_retry[4] = {NULL, "true", "false", "maybe"};
    static const char *const retry_ms[4] = {NULL, "1500", "nan", "-1"};

    const struct llm_provider_ops *op = ops[data[0] % 3];
    struct fake f;
    memset(&f, 0, sizeof f);
    f.res.size = sizeof f.res;
    f.res.status = statuses[data[1] & 31];
    if (f.res.status == 0) {
        f.res.error = errors[data[0] / 3 % 4];
        f.res.error_text = "fuzz transport error";
    }
    f.res.content_type = data[1] & 32 ? NULL : "application/json";
    f.res.header = fake_header;

    const char *body = (const char *)data + 3;
    size_t blen = size - 3;
    char hstore[1024];
    if (data[2] & 0x80) {
        /* header lines from the input, up to an empty line */
        size_t used = 0;
        while (blen > 0 && f.n < MAX_HEADERS) {
            const char *nl = memchr(body, '\n', blen);
            if (!nl) {
                break;
            }
            size_t ll = (size_t)(nl - body);
            body = nl + 1;
            blen -= ll + 1;
            if (ll == 0) {
                break;
            }
            const char *colon = memchr(body - ll - 1, ':', ll);
            if (!colon || ll + 2 > sizeof hstore - used) {
                continue;
            }
            const char *line = body - ll - 1;
            size_t nl_len = (size_t)(colon - line);
            char *name = hstore + used;
            memcpy(name, line, nl_len);
            name[nl_len] = '\0';
            used += nl_len + 1;
            const char *v = colon + 1;
            size_t vl = ll - nl_len - 1;
            while (vl && *v == ' ') {
                v++;
                vl--;
            }
            char *value = hstore + used;
            memcpy(value, v, vl);
            value[vl] = '\0';
            used += vl + 1;
            f.names[f.n] = name;
            f.values[f.n++] = value;
        }
    } else {
        const char *v;
        if ((v = retry_after[data[2] & 7])) {
            f.names[f.n] = "retry-after";
            f.values[f.n++] = v;
        }
        if ((v = should_retry[(data[2] >> 3) & 3])) {
            f.names[f.n] = "x-should-retry";
            f.values[f.n++] = v;
        }
        if ((v = retry_ms[(data[2] >> 5) & 3])) {
            f.names[f.n] = "retry-after-ms";
            f.values[f.n++] = v;
        }
    }
    /* the host's bodies are NUL-terminated */
    char *copy = malloc(blen + 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, body, blen);
    copy[blen] = '\0';
    f.res.body = copy;
    f.res.body_len = blen;

    struct llm_answer a;
    llm_answer_init(&a);
    op->parse(&f.res, &a);
    if (a.outcome != LLM_ANSWER_OK && a.outcome != LLM_ANSWER_INVALID && a.outcome != LLM_ANSWER_RETRY &&
        a.outcome != LLM_ANSWER_FATAL) {
        fail("an unknown outcome", data, size, NULL);
    }
    if (!memchr(a.detail, '\0', sizeof a.detail)) {
        fail("a detail that is not a string", data, size, NULL);
    }
    if ((a.outcome == LLM_ANSWER_OK) != (a.output != NULL)) {
        fail("an output without OK, or OK without an output", data, size, &a);
    }
    if (a.outcome == LLM_ANSWER_OK && (f.res.error || f.res.status < 200 || f.res.status > 299)) {
        fail("an answer taken from a failed call", data, size, &a);
    }
    if (isnan(a.retry_after_s) || isinf(a.retry_after_s)) {
        fail("a retry hint that is not a number of seconds", data, size, &a);
    }
    if (a.timed_out && f.res.error != GTM_ETIMEDOUT) {
        fail("timed out without a timeout", data, size, &a);
    }
    llm_answer_clear(&a);
    free(copy);
    return 0;
}
