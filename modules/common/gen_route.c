#include "gen_route.h"

#include <stdio.h>
#include <string.h>

struct gen_call_state {
    const struct crud_ctx *ctx;
    struct gtm_req *req;
    const struct gen_spec *spec;
    json_t *body;             /* our reference */
    bool sse;
    bool has_url;
};

static const char *stage_name(int stage)
{
    switch (stage) {
    case GTM_STAGE_FETCHING: return "fetching";
    case GTM_STAGE_ANALYSING: return "analysing";
    case GTM_STAGE_GENERATING: return "generating";
    case GTM_STAGE_VALIDATING: return "validating";
    default: return "done";
    }
}

static void on_progress(void *arg, int stage)
{
    struct gen_call_state *s = arg;
    if (s->sse) {
        json_t *data = json_pack("{ss}", "stage", stage_name(stage));
        s->ctx->host->sse_event(s->req, "progress", data);
        json_decref(data);
    }
}

/* The answer, as JSON or as the stream's last event. */
static void answer(struct gen_call_state *s, int status, json_t *body /* stolen */, const char *retry_after)
{
    const struct gtm_host *h = s->ctx->host;
    if (s->sse) {
        if (status >= 400) {
            json_object_set_new(body, "status", json_integer(status));
        }
        h->sse_event(s->req, status >= 400 ? "error" : "result", body);
        json_decref(body);
        h->stream_end(s->req);
        return;
    }
    if (retry_after) {
        h->set_header(s->req, "retry-after", retry_after);
    }
    h->respond_json(s->req, status, body);
}

static void answer_error(struct gen_call_state *s, int status, const char *detail, const char *retry_after)
{
    answer(s, status, json_pack("{ss}", "detail", detail), retry_after);
}

static void on_done(void *arg, const struct gtm_gen_result *res)
{
    struct gen_call_state *s = arg;
    const struct gtm_host *h = s->ctx->host;
    if (h->req_gone(s->req)) {
        json_decref(s->body);
        return;
    }
    char detail[768];
    char retry[16];
    switch (res->status) {
    case GTM_OK: {
        json_t *out = res->output;
        json_t *meta = json_object_get(out, "metadata");
        if (s->has_url && json_is_object(meta)) {
            /* the upstream went on silently when the site failed; we say so */
            json_object_set_new(meta, "website_read", json_boolean(res->website_read));
            if (!res->website_read && res->website_error) {
                json_object_set_new(meta, "website_error", json_string(res->website_error));
            }
        }
        const char *why = NULL;
        int status = s->spec->finish ? s->spec->finish(s->ctx, s->req, s->body, out, res, &why) : 0;
        if (status) {
            answer_error(s, status, why ? why : "The generated result was refused", NULL);
        } else {
            answer(s, 200, json_incref(out), NULL);
        }
        break;
    }
    case GTM_EUNAVAILABLE:
        snprintf(retry, sizeof retry, "%u", res->retry_after_s ? res->retry_after_s : 30);
        snprintf(detail, sizeof detail, "No AI provider is available right now: %s", res->message ? res->message : "");
        answer_error(s, 503, detail, retry);
        break;
    case GTM_ETIMEDOUT:
        snprintf(detail, sizeof detail, "The AI providers did not answer in time: %s", res->message ? res->message : "");
        answer_error(s, 504, detail, NULL);
        break;
    case GTM_EINVALID_OUTPUT:
    case GTM_EPROVIDERS:
        snprintf(detail, sizeof detail, "The AI providers did not produce a valid result: %s",
                 res->message ? res->message : "");
        answer_error(s, 502, detail, NULL);
        break;
    case GTM_ECANCELED:
        answer_error(s, 503, "The server is shutting down, try again shortly", "5");
        break;
    default:
        h->log(s->ctx->self, s->req, GTM_LOG_ERROR, "generation %s failed: %s", s->spec->task,
               res->message ? res->message : "");
        answer_error(s, 500, "Internal server error", NULL);
    }
    json_decref(s->body);
}

static bool wants_sse(const struct gtm_host *h, struct gtm_req *req)
{
    const char *accept = h->req_header(req, "accept");
    return accept && strstr(accept, "text/event-stream") != NULL;
}

void gen_route(const struct crud_ctx *c, struct gtm_req *req, const struct gen_spec *spec)
{
    const struct gtm_host *h = c->host;
    json_t *body = crud_body_object(c, req);
    json_t *vars = json_object();
    const char *url = NULL;
    if (body) {
        spec->build(c, req, body, vars, &url);
    }
    if (h->fail_if_invalid(req)) {
        json_decref(vars);
        return;
    }
    struct gen_call_state *s = h->req_alloc(req, sizeof *s);
    if (!s) {
        json_decref(vars);
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    *s = (struct gen_call_state){c, req, spec, json_incref(body), wants_sse(h, req), url != NULL};
    struct gtm_gen_call call = {.size = sizeof call, .task = spec->task, .vars = vars, .website_url = url};
    int rc = h->generate(c->self, req, &call, on_progress, on_done, s);
    json_decref(vars);
    if (rc != 0) {
        json_decref(s->body);
        h->log(c->self, req, GTM_LOG_ERROR, "generation %s could not start (%d)", spec->task, rc);
        h->respond_error(req, 500, "Internal server error");
        return;
    }
    if (s->sse) {
        h->stream_begin(req, 200, "text/event-stream");
    }
}

void gen_var_str(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars, const char *key,
                 bool required)
{
    /* required means a string, as pydantic's `str` (null is string_type); optional ones take null */
    const char *v = crud_field_str(c, req, body, key, required, !required, 0, NULL);
    json_object_set_new(vars, key, v ? json_string(v) : json_null());
}

void gen_var_obj(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars, const char *key)
{
    json_t *v = NULL;
    crud_field_obj(c, req, body, key, false, true, &v, NULL);
    json_object_set(vars, key, v ? v : json_null());
}
