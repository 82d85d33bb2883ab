/* libFuzzer target: the bytes a client sends to gtmd's HTTP listeners.
 *
 * The real worker (fuzz_server.c: config, server_init, the modules built for
 * this directory, listeners on loopback) gets one connection per input; the
 * client sends the bytes, half-closes and reads until the server closes.
 * Input: one mode byte, then the bytes sent.
 *   bit 0      the admin listener instead of the public one
 *   bits 1-3   bytes per write: all at once, 1, 2, 3, 7, 16, 64 or 512, the
 *              server reading each piece before the next is sent
 * What must hold, besides no sanitizer report and no hang:
 *   - the server ends the connection with a FIN, never a reset;
 *   - what it sent is a sequence of complete HTTP/1.1 responses (none to
 *     HEAD carries a body), at most one per request begun plus one for
 *     unparsable bytes, none after one that said "connection: close";
 *   - every request that arrived whole is answered, unless an answer said
 *     it closes;
 *   - every answer carries x-request-id and a status the server knows. */
#include <llhttp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_server.h"
#include "http/response.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A small body limit, so that 413 is within reach of small inputs. */
    static const struct fuzz_env extra[] = {
        {"GTM_MAX_BODY", "2048"},
        {"CORS_ORIGINS", "http://localhost:5175,https://app.example.com"},
        {NULL, NULL},
    };
    fuzz_server_start(FUZZ_MODULE_DIR, extra);
    return 0;
}

/* Requests that arrived whole: as llhttp reads the same bytes. */
static unsigned completed_requests(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    static const size_t chunks[8] = {0, 1, 2, 3, 7, 16, 64, 512};
    struct fuzz_send how = {.admin = data[0] & 1, .chunk = chunks[(data[0] >> 1) & 7], .half_close = true};
    const uint8_t *in = data + 1;
    size_t len = size - 1;

    static struct fuzz_reply reply;
    fuzz_exchange(in, len, &how, &reply);
    if (reply.reset) {
        fuzz_fail("the server reset the connection instead of closing it", in, len, &reply);
    }
    static struct fuzz_requests reqs;
    fuzz_parse_requests(in, len, &reqs);
    static struct fuzz_responses resp;
    int rc = fuzz_parse_responses(&reply, &reqs, &resp);
    free(resp.body);
    if (rc < 0) {
        fuzz_fail(resp.why, in, len, &reply);
    }
    if (resp.n > reqs.begun + 1) {
        fuzz_fail("more answers than requests", in, len, &reply);
    }
    char why[160];
    for (unsigned i = 0; i < resp.n && i < FUZZ_MAX_MSGS; i++) {
        if (!resp.r[i].has_request_id) {
            snprintf(why, sizeof why, "answer %u (status %d) has no x-request-id", i, resp.r[i].status);
            fuzz_fail(why, in, len, &reply);
        }
        if (strcmp(response_reason(resp.r[i].status), "Unknown") == 0) {
            snprintf(why, sizeof why, "answer %u has status %d", i, resp.r[i].status);
            fuzz_fail(why, in, len, &reply);
        }
    }
    bool closing = resp.n > 0 && resp.n <= FUZZ_MAX_MSGS && resp.r[resp.n - 1].close;
    if (!closing) {
        unsigned whole = completed_requests(in, len);
        if (resp.n < whole) {
            snprintf(why, sizeof why, "%u requests arrived whole, %u answered, and no answer said it closes", whole,
                     resp.n);
            fuzz_fail(why, in, len, &reply);
        }
    }
    return 0;
}

static int count_complete(llhttp_t *p)
{
    (*(unsigned *)p->data)++;
    return 0;
}

static unsigned completed_requests(const uint8_t *data, size_t len)
{
    static llhttp_settings_t s;
    static int ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_message_complete = count_complete;
        ready = 1;
    }
    unsigned n = 0;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    p.data = &n;
    llhttp_execute(&p, (const char *)data, len);
    return n;
}
