/* The host table's generation and streaming functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/gen.h"
#include "http/request.h"
#include "http/response.h"
#include "log.h"
#include "modules/host_internal.h"
#include "modules/module_host.h"
#include "server.h"

struct gen_trampoline {
    struct gtm_mod *mod;
    struct gtm_req *req;
    gtm_gen_progress_fn progress;
    gtm_gen_done_fn done;
    void *arg;
};

static void gen_tramp_progress(void *arg, int stage)
{
    struct gen_trampoline *t = arg;
    if (t->progress && t->req->conn) {
        t->progress(t->arg, stage);
    }
}

static void gen_tramp_done(void *arg, const struct gtm_gen_result *res)
{
    struct gen_trampoline *t = arg;
    t->req->gen_waiter = NULL;
    t->done(t->arg, res);
    request_unref(t->req);
    module_unref(t->mod);
    free(t);
}

int host_generate(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_gen_call *call,
                  gtm_gen_progress_fn progress, gtm_gen_done_fn done, void *arg)
{
    if (!mod || !req || !call || !done || call->size < offsetof(struct gtm_gen_call, website_url) + sizeof(char *) ||
        req->gen_waiter) {
        return GTM_EINVAL;
    }
    struct server *srv = mod->srv;
    if (!srv->gen) {
        return GTM_EINVAL;
    }
    struct gen_trampoline *t = malloc(sizeof *t);
    if (!t) {
        return GTM_ENOMEM;
    }
    *t = (struct gen_trampoline){mod, req, progress, done, arg};
    if (gen_start(srv->gen, call, req->id, gen_tramp_progress, gen_tramp_done, t, &req->gen_waiter) != 0) {
        free(t);
        return GTM_EINVAL;
    }
    module_ref(mod);
    request_ref(req);
    return 0;
}

int host_stream_begin(struct gtm_req *req, int status, const char *content_type)
{
    return response_stream_begin(req, status, content_type);
}

int host_stream_write(struct gtm_req *req, const void *data, size_t len)
{
    return response_stream_write(req, data, len);
}

void host_stream_end(struct gtm_req *req)
{
    response_stream_end(req);
}

int host_sse_event(struct gtm_req *req, const char *event, json_t *data)
{
    if (!event || strpbrk(event, "\r\n")) {
        return GTM_EINVAL;
    }
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        return GTM_ENOMEM;
    }
    /* compact JSON has no newline, so one data line carries it */
    size_t need = strlen(event) + strlen(text) + 32;
    char *frame = malloc(need);
    if (!frame) {
        free(text);
        return GTM_ENOMEM;
    }
    int n = snprintf(frame, need, "event: %s\ndata: %s\n\n", event, text);
    int rc = response_stream_write(req, frame, (size_t)n);
    free(frame);
    free(text);
    return rc;
}
