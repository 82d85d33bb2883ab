#include "gen/gen.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/sha256.h>

#include "llm/llm.h"
#include "log.h"
#include "prompt/prompt.h"
#include "site/site.h"
#include "util/defer.h"

#define GEN_BUCKETS 512
#define GEN_FETCH_SHARE_MS 20000u   /* the website gets at most this much of the deadline */

struct gen_waiter {
    struct gen_run *run;
    struct gen_waiter *next;
    gtm_gen_progress_fn progress;
    gtm_gen_done_fn done;
    void *arg;
    bool left;
    bool pinned;                      /* a stage notice is pending: freed by it */
};

struct gen_run {
    struct gen *g;
    struct gen_run *next;             /* in its bucket */
    unsigned char key[32];
    char task[64];
    char request_id[136];             /* the first caller's, for the log */
    json_t *vars;                     /* our copy */
    char *url;
    int stage;
    struct gen_waiter *waiters;
    unsigned active;                  /* waiters that have not left */
    unsigned total;
    struct site_op *site_op;
    struct llm_op *llm_op;
    char *system;
    char *user;
    int website_read;
    char *website_error;
    uint64_t started_ns;
    bool finished;
};

struct gen {
    uv_loop_t *loop;
    struct site *site;
    struct llm *llm;
    const struct prompts *prompts;
    unsigned timeout_ms;
    struct gen_run *buckets[GEN_BUCKETS];
    unsigned runs;
    bool closing;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct gen *gen_new(uv_loop_t *loop, struct site *site, struct llm *llm, const struct prompts *prompts,
                    unsigned timeout_ms)
{
    struct gen *g = calloc(1, sizeof *g);
    if (g) {
        g->loop = loop;
        g->site = site;
        g->llm = llm;
        g->prompts = prompts;
        g->timeout_ms = timeout_ms ? timeout_ms : 120000;
    }
    return g;
}

unsigned gen_runs(const struct gen *g)
{
    return g->runs;
}

static size_t bucket_of(const unsigned char key[32])
{
    size_t v;
    memcpy(&v, key, sizeof v);
    return v % GEN_BUCKETS;
}

static void run_key(const struct gtm_gen_call *call, unsigned char out[32])
{
    /* Same task, same URL, same variables (key order aside): same run. */
    char *vars = json_dumps(call->vars, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    mbedtls_sha256_context c;
    mbedtls_sha256_init(&c);
    mbedtls_sha256_starts_ret(&c, 0);
    mbedtls_sha256_update_ret(&c, (const unsigned char *)call->task, strlen(call->task) + 1);
    const char *url = call->website_url ? call->website_url : "";
    mbedtls_sha256_update_ret(&c, (const unsigned char *)url, strlen(url) + 1);
    if (vars) {
        mbedtls_sha256_update_ret(&c, (const unsigned char *)vars, strlen(vars));
    }
    mbedtls_sha256_finish_ret(&c, out);
    mbedtls_sha256_free(&c);
    free(vars);
}

static unsigned remaining_ms(const struct gen_run *r)
{
    uint64_t spent = (mono_ns() - r->started_ns) / 1000000u;
    return spent >= r->g->timeout_ms ? 0 : r->g->timeout_ms - (unsigned)spent;
}

/* --- progress and completion --- */

static void set_stage(struct gen_run *r, int stage)
{
    r->stage = stage;
    for (struct gen_waiter *w = r->waiters; w; w = w->next) {
        if (!w->left && w->progress) {
            w->progress(w->arg, stage);
        }
    }
}

static void run_unlink(struct gen_run *r)
{
    struct gen_run **pp = &r->g->buckets[bucket_of(r->key)];
    while (*pp && *pp != r) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = r->next;
    }
    r->g->runs--;
}

static void run_free(struct gen_run *r)
{
    struct gen_waiter *w = r->waiters;
    while (w) {
        struct gen_waiter *next = w->next;
        if (w->pinned) {
            w->run = NULL;   /* tell_stage frees it */
        } else {
            free(w);
        }
        w = next;
    }
    json_decref(r->vars);
    free(r->url);
    free(r->system);
    free(r->user);
    free(r->website_error);
    free(r);
}

static void run_finish(struct gen_run *r, const struct llm_result *lr, int status, const char *message)
{
    if (r->finished) {
        return;
    }
    r->finished = true;
    run_unlink(r);
    struct gtm_gen_result res = {
        .size = sizeof res,
        .status = status,
        .message = message,
        .website_read = r->website_read,
        .website_error = r->website_error,
        .duration_ms = (double)(mono_ns() - r->started_ns) / 1e6,
    };
    if (lr) {
        res.provider = lr->provider;
        res.model = lr->model;
        res.prompt_tokens = lr->prompt_tokens;
        res.completion_tokens = lr->completion_tokens;
        res.retry_after_s = lr->retry_after_s;
    }
    log_msg(status == GTM_OK ? LOG_INFO : LOG_WARN, r->request_id, NULL,
            "generation %s: %s%s%s; provider %s %s, tokens %u+%u, %u waiter%s, %.0f ms%s%s", r->task,
            status == GTM_OK ? "ok" : "failed", message ? ": " : "", message ? message : "",
            res.provider && *res.provider ? res.provider : "-", res.model ? res.model : "", res.prompt_tokens,
            res.completion_tokens, r->total, r->total == 1 ? "" : "s", res.duration_ms,
            r->website_error ? "; website not read: " : "", r->website_error ? r->website_error : "");
    if (status == GTM_OK) {
        set_stage(r, GTM_STAGE_DONE);
    }
    for (struct gen_waiter *w = r->waiters; w; w = w->next) {
        /* each caller post-processes its own copy */
        json_t *copy = status == GTM_OK && lr && lr->output ? json_deep_copy(lr->output) : NULL;
        res.output = copy;
        if (status == GTM_OK && !copy) {
            res.status = GTM_EPROVIDERS;
            res.message = "out of memory";
        }
        w->done(w->arg, &res);
        json_decref(copy);
        res.status = status;
        res.message = message;
    }
    struct gen *g = r->g;
    run_free(r);
    if (g->closing && g->runs == 0) {
        free(g);
    }
}

static int map_llm_status(int s)
{
    switch (s) {
    case LLM_OK: return GTM_OK;
    case LLM_EUNAVAILABLE: return GTM_EUNAVAILABLE;
    case LLM_ETIMEDOUT: return GTM_ETIMEDOUT;
    case LLM_EINVALID: return GTM_EINVALID_OUTPUT;
    case LLM_ECANCELED: return GTM_ECANCELED;
    default: return GTM_EPROVIDERS;
    }
}

static void on_llm(void *arg, const struct llm_result *lr)
{
    struct gen_run *r = arg;
    r->llm_op = NULL;
    if (lr->status == LLM_OK) {
        set_stage(r, GTM_STAGE_VALIDATING);
    }
    run_finish(r, lr, map_llm_status(lr->status), lr->status == LLM_OK ? NULL : lr->message);
}

static void generate_now(struct gen_run *r)
{
    set_stage(r, GTM_STAGE_ANALYSING);
    char err[256];
    json_object_set_new(r->vars, "website_read", json_boolean(r->website_read));
    if (prompts_render(r->g->prompts, r->task, r->vars, &r->system, &r->user, err, sizeof err) < 0) {
        run_finish(r, NULL, GTM_EIO, err);
        return;
    }
    unsigned left = remaining_ms(r);
    if (left == 0) {
        run_finish(r, NULL, GTM_ETIMEDOUT, "the generation deadline passed before the model was asked");
        return;
    }
    set_stage(r, GTM_STAGE_GENERATING);
    struct llm_request lq = {
        .task = r->task,
        .system = r->system,
        .user = r->user,
        .schema = prompts_schema(r->g->prompts, r->task),
        .schema_name = r->task,
        .temperature = 0.2,
        .max_tokens = 4096,
        .deadline_ms = left,
        .request_id = r->request_id,
    };
    if (llm_generate(r->g->llm, &lq, on_llm, r, &r->llm_op) != 0) {
        run_finish(r, NULL, GTM_EPROVIDERS, "the model request could not be made");
    }
}

static void on_site(void *arg, const struct site_result *sr)
{
    struct gen_run *r = arg;
    r->site_op = NULL;
    if (sr->status == SITE_ECANCELED) {
        run_finish(r, NULL, GTM_ECANCELED, "cancelled");
        return;
    }
    if (sr->status == SITE_OK) {
        json_object_set_new(r->vars, "website_content", json_stringn(sr->text, sr->len));
        r->website_read = 1;
    } else {
        /* the site failing never fails the request: the model works from the request alone */
        json_object_set_new(r->vars, "website_content", json_null());
        r->website_error = strdup(sr->message ? sr->message : "the website could not be read");
    }
    generate_now(r);
}

static void run_begin(void *arg)
{
    struct gen_run *r = arg;
    if (r->finished) {
        return;
    }
    if (r->active == 0) {
        run_finish(r, NULL, GTM_ECANCELED, "cancelled");
        return;
    }
    if (!r->url) {
        json_object_set_new(r->vars, "website_content", json_null());
        generate_now(r);
        return;
    }
    set_stage(r, GTM_STAGE_FETCHING);
    unsigned left = remaining_ms(r);
    unsigned budget = left < GEN_FETCH_SHARE_MS ? left / 2 : GEN_FETCH_SHARE_MS;
    if (site_fetch(r->g->site, r->url, budget, on_site, r, &r->site_op) != 0) {
        json_object_set_new(r->vars, "website_content", json_null());
        r->website_error = strdup("the website fetch could not start");
        generate_now(r);
    }
}

/* A late joiner hears the stage the run is in. */
struct joined {
    struct gen_waiter *w;
    int stage;
};

static void tell_stage(void *arg)
{
    struct joined *j = arg;
    struct gen_waiter *w = j->w;
    w->pinned = false;
    if (!w->run) {
        free(w);   /* the run finished meanwhile, and told it then */
    } else if (!w->left && !w->run->finished && w->progress) {
        w->progress(w->arg, j->stage);
    }
    free(j);
}

int gen_start(struct gen *g, const struct gtm_gen_call *call, const char *request_id, gtm_gen_progress_fn progress,
              gtm_gen_done_fn done, void *arg, struct gen_waiter **out)
{
    if (g->closing || !call || !call->task || !done || !json_is_object(call->vars) ||
        !prompts_has(g->prompts, call->task) || strlen(call->task) >= sizeof(((struct gen_run *)0)->task)) {
        return -1;
    }
    struct gen_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        return -1;
    }
    w->progress = progress;
    w->done = done;
    w->arg = arg;
    unsigned char key[32];
    run_key(call, key);
    struct gen_run *r = g->buckets[bucket_of(key)];
    while (r && (r->finished || memcmp(r->key, key, 32) != 0)) {
        r = r->next;
    }
    if (r) {
        struct joined *j = malloc(sizeof *j);
        if (j && r->stage) {
            j->w = w;
            j->stage = r->stage;
            w->pinned = true;
            if (defer_call(g->loop, tell_stage, j) < 0) {
                w->pinned = false;
                free(j);
            }
        } else {
            free(j);
        }
    } else {
        r = calloc(1, sizeof *r);
        if (!r || !(r->vars = json_deep_copy(call->vars)) ||
            (call->website_url && !(r->url = strdup(call->website_url))) || defer_call(g->loop, run_begin, r) < 0) {
            if (r) {
                json_decref(r->vars);
                free(r->url);
                free(r);
            }
            free(w);
            return -1;
        }
        r->g = g;
        memcpy(r->key, key, 32);
        snprintf(r->task, sizeof r->task, "%s", call->task);
        snprintf(r->request_id, sizeof r->request_id, "%s", request_id ? request_id : "-");
        r->started_ns = mono_ns();
        size_t b = bucket_of(key);
        r->next = g->buckets[b];
        g->buckets[b] = r;
        g->runs++;
    }
    w->run = r;
    w->next = r->waiters;
    r->waiters = w;
    r->active++;
    r->total++;
    if (out) {
        *out = w;
    }
    return 0;
}

void gen_leave(struct gen_waiter *w)
{
    if (w->left) {
        return;
    }
    w->left = true;
    struct gen_run *r = w->run;
    if (r->finished || --r->active > 0) {
        return;
    }
    /* nobody is waiting: stop the work; its callback finishes the run */
    if (r->site_op) {
        site_cancel(r->site_op);
    } else if (r->llm_op) {
        llm_cancel(r->llm_op);
    }
}

void gen_close(struct gen *g)
{
    g->closing = true;
    for (size_t b = 0; b < GEN_BUCKETS; b++) {
        for (struct gen_run *r = g->buckets[b]; r; r = r->next) {
            for (struct gen_waiter *w = r->waiters; w; w = w->next) {
                w->left = true;
            }
            r->active = 0;
            if (r->site_op) {
                site_cancel(r->site_op);
            } else if (r->llm_op) {
                llm_cancel(r->llm_op);
            }
        }
    }
    /* runs still in flight finish (cancelled) on later turns; the last frees g */
    if (g->runs == 0) {
        free(g);
    }
}
