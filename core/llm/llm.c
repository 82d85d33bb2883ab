/* The orchestrator: one llm_generate walks the providers in order, skipping
 * those whose circuit is open; with each it retries transient failures
 * (waiting on a uv_timer, honouring Retry-After), validates the answer, asks
 * once more with the validation errors, and moves on when the provider
 * cannot deliver.  One deadline covers everything: each provider's turn gets
 * a share of it (start_turn), each HTTP call the time left in its turn, and
 * no wait is started that would outlast the turn.
 *
 * An op owns one uv_timer (backoff waits, and deferring done when the
 * outcome is known inside llm_generate or llm_cancel) and at most one HTTP
 * call.  It is freed when its timer has closed, after done. */
#include "llm/llm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/httpc.h"
#include "gtm/module.h"
#include "llm/llm_internal.h"
#include "schema/schema.h"

#define MAX_REPAIR_ERRORS 20
#define BACKOFF_BASE_MS 500.0
#define BACKOFF_CAP_MS 8000.0
/* A transport timeout this close to the deadline is the deadline. */
#define DEADLINE_SLACK_MS 25
#define NOTE_LEN 240
#define MESSAGE_LEN 1024

struct provider {
    struct llm_provider_config cfg;
    const struct llm_provider_ops *ops;
    struct llm_breaker breaker;
    uint64_t calls, failures, prompt_tokens, completion_tokens;
};

struct llm {
    uv_loop_t *loop;
    struct httpc *httpc;
    struct provider providers[LLM_MAX_PROVIDERS];
    size_t n_providers;
    unsigned attempts_per_provider;
    uint64_t jitter_state;
    struct llm_op *ops; /* every op whose timer has not closed yet */
    bool closing;
};

/* How a provider's turn in an op ended, for the final status and message. */
enum provider_end { END_NOT_TRIED = 0, END_SKIPPED, END_FAILED, END_INVALID, END_TIMEOUT };

enum op_phase { PHASE_CALLING, PHASE_WAITING, PHASE_FINISHED };

struct llm_op {
    struct llm *l;
    struct llm_op *prev, *next;
    uv_timer_t timer;
    llm_done_fn done;
    void *arg;

    /* the request, copied */
    char *system, *user, *schema_name;
    const struct schema *schema;
    json_t *openai_strict; /* computed on first use; NULL = json_object mode */
    bool openai_strict_ready;
    double temperature;
    unsigned max_tokens;
    uint64_t deadline_ms;
    uint64_t turn_deadline_ms;      /* the current provider's share of it */

    /* where it is */
    enum op_phase phase;
    size_t current;                 /* index of the provider being tried */
    unsigned transient_failures;    /* of the current provider */
    bool repairing;                 /* the current provider is on its repair turn */
    json_t *previous_turn;          /* the answer being repaired, provider-shaped */
    char *repair_text;
    struct httpc_call *call;
    bool in_generate, cancel_requested, delivered;
    enum provider_end ends[LLM_MAX_PROVIDERS];
    char notes[LLM_MAX_PROVIDERS][NOTE_LEN];

    /* the result */
    int status;
    json_t *output;
    size_t answered_by; /* provider index, valid when status is LLM_OK */
    unsigned prompt_tokens, completion_tokens, attempts, retry_after_s;
    char message[MESSAGE_LEN];
};

static void try_next_provider(struct llm_op *op);
static void send_attempt(struct llm_op *op);

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static int64_t remaining_ms(const struct llm_op *op) {
    return (int64_t)op->deadline_ms - (int64_t)now_ms();
}

/* What is left of the current provider's turn (never more than remaining_ms). */
static int64_t turn_remaining_ms(const struct llm_op *op) {
    return (int64_t)op->turn_deadline_ms - (int64_t)now_ms();
}

/* xorshift64: jitter needs no quality, only independence from rand(). */
static double jitter_fraction(struct llm *l) {
    uint64_t x = l->jitter_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    l->jitter_state = x;
    return (double)(x >> 11) / (double)(1ull << 53);
}

/* ---- the end of an op ----------------------------------------------------- */

static void free_op(struct llm_op *op) {
    free(op->system);
    free(op->user);
    free(op->schema_name);
    free(op->repair_text);
    json_decref(op->previous_turn);
    json_decref(op->openai_strict);
    json_decref(op->output);
    free(op);
}

static void on_op_closed(uv_handle_t *h) {
    struct llm_op *op = h->data;
    struct llm *l = op->l;
    if (op->prev)
        op->prev->next = op->next;
    else
        l->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    free_op(op);
    if (l->closing && !l->ops)
        free(l);
}

static void deliver(struct llm_op *op) {
    struct llm *l = op->l;
    op->delivered = true;
    bool ok = op->status == LLM_OK;
    struct llm_result res = {
        .status = op->status,
        .output = ok ? op->output : NULL,
        .provider = ok ? l->providers[op->answered_by].cfg.name : "",
        .model = ok ? l->providers[op->answered_by].cfg.model : "",
        .prompt_tokens = op->prompt_tokens,
        .completion_tokens = op->completion_tokens,
        .attempts = op->attempts,
        .retry_after_s = op->retry_after_s,
        .message = op->message,
    };
    op->done(op->arg, &res);
    uv_close((uv_handle_t *)&op->timer, on_op_closed);
}

static void on_deliver_timer(uv_timer_t *t) { deliver(t->data); }

/* Keys never reach a message, even when a server quotes one back. */
static void redact(char *text, const char *secret) {
    size_t n = strlen(secret);
    if (n < 4)
        return;
    for (char *hit; (hit = strstr(text, secret));) {
        memset(hit, '*', 3);
        memmove(hit + 3, hit + n, strlen(hit + n) + 1);
    }
}

static void one_line(char *text) {
    for (; *text; text++)
        if (*text == '\n' || *text == '\r' || *text == '\t')
            *text = ' ';
}

static void compose_message(struct llm_op *op) {
    struct llm *l = op->l;
    size_t used = 0;
    op->message[0] = '\0';
    for (size_t i = 0; i < l->n_providers; i++) {
        if (!op->notes[i][0])
            continue;
        int n = snprintf(op->message + used, sizeof(op->message) - used, "%s%s: %s",
                         used ? "; " : "", l->providers[i].cfg.name, op->notes[i]);
        if (n < 0 || (size_t)n >= sizeof(op->message) - used)
            break;
        used += (size_t)n;
    }
    for (size_t i = 0; i < l->n_providers; i++)
        redact(op->message, l->providers[i].cfg.api_key);
    one_line(op->message);
}

/* Records the outcome; done runs now, or on the next loop turn when we are
 * inside llm_generate or llm_cancel. */
static void finish(struct llm_op *op, int status, bool later) {
    op->phase = PHASE_FINISHED;
    op->status = status;
    if (!op->message[0])
        compose_message(op); /* on success too: what the providers before it did */
    if (later || op->in_generate) {
        uv_timer_stop(&op->timer);
        uv_timer_start(&op->timer, on_deliver_timer, 0, 0);
        return;
    }
    deliver(op);
}

static void finish_exhausted(struct llm_op *op) {
    struct llm *l = op->l;
    if (l->n_providers == 0) {
        snprintf(op->message, sizeof(op->message),
                 "no LLM provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY or "
                 "GEMINI_API_KEY (or OPENAI_BASE_URL for a compatible server)");
        finish(op, LLM_EUNAVAILABLE, false);
        return;
    }
    bool all_skipped = true, any_timeout = false, all_invalid = true;
    uint64_t first_half_open = UINT64_MAX, now = now_ms();
    for (size_t i = 0; i < l->n_providers; i++) {
        enum provider_end e = op->ends[i];
        if (e == END_SKIPPED) {
            uint64_t wait = breaker_ms_until_half_open(&l->providers[i].breaker, now);
            if (wait < first_half_open)
                first_half_open = wait;
            continue;
        }
        all_skipped = false;
        any_timeout |= e == END_TIMEOUT;
        all_invalid &= e == END_INVALID;
    }
    if (all_skipped) {
        uint64_t s = first_half_open == UINT64_MAX ? 1 : (first_half_open + 999) / 1000;
        op->retry_after_s = s ? (unsigned)s : 1;
        compose_message(op);
        finish(op, LLM_EUNAVAILABLE, false);
    } else if (any_timeout) {
        finish(op, LLM_ETIMEDOUT, false);
    } else {
        finish(op, all_invalid ? LLM_EINVALID : LLM_EFAILED, false);
    }
}

/* ---- moving between providers -------------------------------------------- */

static void note(struct llm_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct llm_op *op, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->notes[op->current], NOTE_LEN, fmt, ap);
    va_end(ap);
}

static void reset_turn(struct llm_op *op) {
    op->transient_failures = 0;
    op->repairing = false;
    json_decref(op->previous_turn);
    op->previous_turn = NULL;
    free(op->repair_text);
    op->repair_text = NULL;
}

/* The current provider is done with, for the reason in its note.  Only
 * failures of the provider itself count against its breaker. */
static void provider_done(struct llm_op *op, enum provider_end end, bool breaker_counts) {
    struct provider *p = &op->l->providers[op->current];
    op->ends[op->current] = end;
    if (breaker_counts) {
        breaker_failure(&p->breaker, now_ms());
        p->failures++;
    }
    reset_turn(op);
    if (end == END_TIMEOUT && remaining_ms(op) <= DEADLINE_SLACK_MS) {
        finish(op, LLM_ETIMEDOUT, false);
        return;
    }
    op->current++;
    try_next_provider(op);
}

/* A provider's turn (its retries and repair included) gets an equal share of
 * the time left when it starts, counting the providers after it that could
 * still be asked; the last one gets all that is left.  A provider that hangs
 * then costs its share, not the whole deadline, and the next one is still
 * asked: failover on timeout, as on any other failure. */
static void start_turn(struct llm_op *op) {
    struct llm *l = op->l;
    uint64_t now = now_ms();
    uint64_t later = 0;
    for (size_t i = op->current + 1; i < l->n_providers; i++)
        later += breaker_state_at(&l->providers[i].breaker, now) != LLM_OPEN;
    int64_t left = remaining_ms(op);
    op->turn_deadline_ms = left > 0 && later ? now + (uint64_t)left / (later + 1) : op->deadline_ms;
}

static void try_next_provider(struct llm_op *op) {
    struct llm *l = op->l;
    for (; op->current < l->n_providers; op->current++) {
        struct provider *p = &l->providers[op->current];
        if (breaker_allow(&p->breaker, now_ms())) {
            reset_turn(op);
            start_turn(op);
            send_attempt(op);
            return;
        }
        op->ends[op->current] = END_SKIPPED;
        note(op, "circuit open");
    }
    finish_exhausted(op);
}

/* ---- one HTTP call ---------------------------------------------------------- */

static json_t *openai_strict_schema(struct llm_op *op) {
    if (!op->openai_strict_ready) {
        op->openai_strict = schema_openai_strict(op->schema);
        op->openai_strict_ready = true;
    }
    return op->openai_strict;
}

static void on_http_done(void *arg, const struct gtm_http_result *res);

static void send_attempt(struct llm_op *op) {
    struct llm *l = op->l;
    struct provider *p = &l->providers[op->current];
    int64_t left = remaining_ms(op);
    if (left <= 0) {
        op->ends[op->current] = END_TIMEOUT;
        note(op, "deadline passed before it could answer");
        finish(op, LLM_ETIMEDOUT, false);
        return;
    }
    int64_t turn_left = turn_remaining_ms(op);
    if (turn_left <= DEADLINE_SLACK_MS && op->turn_deadline_ms < op->deadline_ms) {
        note(op, "no answer within its share of the deadline");
        provider_done(op, END_TIMEOUT, true);
        return;
    }
    if (turn_left < left)
        left = turn_left;
    struct llm_prompt prompt = {
        .system = op->system,
        .user = op->user,
        .schema_doc = schema_document(op->schema),
        .openai_strict = p->ops == &llm_openai_ops ? openai_strict_schema(op) : NULL,
        .schema_name = op->schema_name,
        .temperature = op->temperature,
        .max_tokens = op->max_tokens,
        .previous_turn = op->repairing ? op->previous_turn : NULL,
        .repair_text = op->repairing ? op->repair_text : NULL,
    };
    struct llm_wire_request wire;
    char err[200];
    if (p->ops->build(&p->cfg, &prompt, &wire, err, sizeof(err)) != 0) {
        note(op, "cannot build the request: %s", err);
        provider_done(op, END_FAILED, false);
        return;
    }
    struct gtm_http_call call = {
        .size = sizeof(call),
        .method = "POST",
        .url = wire.url,
        .headers = (const char *const *)wire.headers,
        .body = wire.body,
        .body_len = wire.body_len,
        .timeout_ms = (long)left,
    };
    int rc = httpc_start(l->httpc, &call, on_http_done, op, &op->call); /* copies the request */
    llm_wire_request_free(&wire);
    if (rc != 0) {
        note(op, "cannot start the HTTP call (error %d)", rc);
        provider_done(op, END_FAILED, false);
        return;
    }
    op->phase = PHASE_CALLING;
    op->attempts++;
    p->calls++;
}

static void on_wait_done(uv_timer_t *t) {
    struct llm_op *op = t->data;
    send_attempt(op);
}

/* 429, 5xx, a dropped connection: wait and try the same provider again, or
 * give up on it when the attempts or the time run out. */
static void retry_later(struct llm_op *op, const struct llm_answer *a) {
    struct llm *l = op->l;
    op->transient_failures++;
    enum provider_end end = a->timed_out ? END_TIMEOUT : END_FAILED;
    if (op->transient_failures >= l->attempts_per_provider) {
        note(op, "%s (%u attempts)", a->detail, op->transient_failures);
        provider_done(op, end, true);
        return;
    }
    int64_t left = turn_remaining_ms(op);
    double wait_ms;
    if (a->retry_after_s >= 0) {
        wait_ms = a->retry_after_s * 1000.0;
        if (wait_ms >= (double)left) {
            note(op, "%s, Retry-After %.0f s is past the deadline", a->detail, a->retry_after_s);
            provider_done(op, end, true);
            return;
        }
    } else {
        unsigned doublings = op->transient_failures - 1;
        double backoff = BACKOFF_BASE_MS * (double)(1u << (doublings < 8 ? doublings : 8));
        if (backoff > BACKOFF_CAP_MS)
            backoff = BACKOFF_CAP_MS;
        wait_ms = backoff * (0.75 + 0.25 * jitter_fraction(l));
        if (wait_ms >= (double)left) {
            note(op, "%s, no time left to retry", a->detail);
            provider_done(op, end, true);
            return;
        }
    }
    note(op, "%s", a->detail);
    op->phase = PHASE_WAITING;
    uv_timer_start(&op->timer, on_wait_done, (uint64_t)(wait_ms + 0.999), 0);
}

/* The repair turn's user text: what was wrong, in words the model can act on. */
static char *repair_text_for(json_t *errors, const char *detail) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    if (errors) {
        fputs("Your previous answer does not match the required JSON schema:\n", f);
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) {
            const char *path = json_string_value(json_object_get(e, "path"));
            const char *msg = json_string_value(json_object_get(e, "message"));
            fprintf(f, "- %s: %s\n", path && *path ? path : "(root)", msg ? msg : "invalid");
        }
    } else {
        fprintf(f, "Your previous answer could not be used: %s.\n", detail);
    }
    fputs("Answer again with the complete, corrected JSON object and nothing else.", f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* An answer without a usable output: one repair turn, then the next provider. */
static void answer_invalid(struct llm_op *op, struct llm_answer *a, json_t *errors) {
    const char *first = NULL;
    json_t *e0 = json_array_get(errors, 0);
    char summary[NOTE_LEN];
    if (e0) {
        const char *path = json_string_value(json_object_get(e0, "path"));
        first = json_string_value(json_object_get(e0, "message"));
        snprintf(summary, sizeof(summary), "%zu schema error(s), first %s: %s",
                 json_array_size(errors), path && *path ? path : "(root)", first ? first : "");
    } else {
        snprintf(summary, sizeof(summary), "%s", a->detail);
    }
    if (op->repairing) {
        note(op, "invalid output after a repair turn: %s", summary);
        provider_done(op, END_INVALID, true);
        return;
    }
    char *text = repair_text_for(errors, a->detail);
    if (!text) {
        note(op, "invalid output: %s", summary);
        provider_done(op, END_INVALID, true);
        return;
    }
    op->repairing = true;
    op->previous_turn = a->assistant_turn; /* the op owns it now */
    a->assistant_turn = NULL;
    op->repair_text = text;
    note(op, "invalid output, repairing: %s", summary);
    send_attempt(op);
}

/* The value at a JSON pointer's last step is removed from its parent object
 * when it is null.  true when something was removed. */
static bool drop_null_at(json_t *doc, const char *pointer) {
    json_t *parent = doc;
    char key[256];
    while (pointer && *pointer == '/') {
        const char *end = strchr(pointer + 1, '/');
        size_t len = end ? (size_t)(end - pointer - 1) : strlen(pointer + 1);
        size_t k = 0;
        for (size_t i = 0; i < len && k < sizeof(key) - 1; i++) {
            char c = pointer[1 + i];
            if (c == '~' && i + 1 < len && (pointer[2 + i] == '0' || pointer[2 + i] == '1'))
                c = pointer[2 + i++] == '0' ? '~' : '/';
            key[k++] = c;
        }
        key[k] = '\0';
        json_t *child;
        if (json_is_object(parent))
            child = json_object_get(parent, key);
        else if (json_is_array(parent))
            child = json_array_get(parent, strtoul(key, NULL, 10));
        else
            return false;
        if (!end) {
            return json_is_null(child) && json_is_object(parent) &&
                   json_object_del(parent, key) == 0;
        }
        parent = child;
        pointer = end;
    }
    return false;
}

/* Strict mode makes every optional property required-but-nullable, so a
 * model may send null for an optional property whose own type has no null.
 * Leaving such properties out means what the model meant. */
static size_t validate_strict_answer(struct llm_op *op, json_t *output, json_t **errors) {
    size_t n = schema_validate(op->schema, output, errors, MAX_REPAIR_ERRORS);
    bool dropped = false;
    size_t i;
    json_t *e;
    json_array_foreach(*errors, i, e)
        dropped |= drop_null_at(output, json_string_value(json_object_get(e, "path")));
    if (!dropped)
        return n;
    json_decref(*errors);
    *errors = NULL;
    return schema_validate(op->schema, output, errors, MAX_REPAIR_ERRORS);
}

static void answer_ok(struct llm_op *op, struct llm_answer *a) {
    struct provider *p = &op->l->providers[op->current];
    json_t *errors = NULL;
    size_t n = p->ops == &llm_openai_ops && op->openai_strict
                   ? validate_strict_answer(op, a->output, &errors)
                   : schema_validate(op->schema, a->output, &errors, MAX_REPAIR_ERRORS);
    if (n) {
        answer_invalid(op, a, errors);
        json_decref(errors);
        return;
    }
    json_decref(errors);
    json_t *normalized = schema_normalize(op->schema, a->output);
    if (!normalized) {
        note(op, "cannot normalize the output");
        provider_done(op, END_INVALID, false);
        return;
    }
    breaker_success(&p->breaker);
    op->output = normalized;
    op->answered_by = op->current;
    finish(op, LLM_OK, false);
}

static void on_http_done(void *arg, const struct gtm_http_result *res) {
    struct llm_op *op = arg;
    struct provider *p = &op->l->providers[op->current];
    op->call = NULL;
    if (op->cancel_requested || res->error == GTM_ECANCELED) {
        snprintf(op->message, sizeof(op->message), "cancelled");
        finish(op, LLM_ECANCELED, false);
        return;
    }
    struct llm_answer a;
    llm_answer_init(&a);
    p->ops->parse(res, &a);
    redact(a.detail, p->cfg.api_key);
    op->prompt_tokens += a.prompt_tokens;
    op->completion_tokens += a.completion_tokens;
    p->prompt_tokens += a.prompt_tokens;
    p->completion_tokens += a.completion_tokens;

    switch (a.outcome) {
    case LLM_ANSWER_OK:
        answer_ok(op, &a);
        break;
    case LLM_ANSWER_INVALID:
        answer_invalid(op, &a, NULL);
        break;
    case LLM_ANSWER_RETRY:
        if (a.timed_out && turn_remaining_ms(op) <= DEADLINE_SLACK_MS) {
            note(op, op->turn_deadline_ms < op->deadline_ms ? "no answer within its share of the deadline"
                                                            : "no answer before the deadline");
            provider_done(op, END_TIMEOUT, true);
        } else {
            retry_later(op, &a);
        }
        break;
    case LLM_ANSWER_FATAL:
        note(op, "%s", a.detail);
        provider_done(op, END_FAILED, true);
        break;
    }
    llm_answer_clear(&a);
}

/* ---- public API ------------------------------------------------------------- */

struct llm *llm_new(uv_loop_t *loop, struct httpc *httpc, const struct llm_config *cfg) {
    if (!loop || !httpc || !cfg || cfg->n_providers > LLM_MAX_PROVIDERS)
        return NULL;
    struct llm *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->loop = loop;
    l->httpc = httpc;
    l->attempts_per_provider = cfg->attempts_per_provider ? cfg->attempts_per_provider : 1;
    l->jitter_state = uv_hrtime() | 1;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct llm_provider_ops *ops = llm_provider_ops_find(cfg->providers[i].name);
        if (!ops) {
            free(l);
            return NULL;
        }
        struct provider *p = &l->providers[l->n_providers++];
        p->cfg = cfg->providers[i];
        p->ops = ops;
        breaker_init(&p->breaker, cfg->breaker_threshold, cfg->breaker_recovery_s);
    }
    return l;
}

static bool valid_schema_name(const char *name) {
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
    }
    return n >= 1 && n <= 64;
}

int llm_generate(struct llm *l, const struct llm_request *req, llm_done_fn done, void *arg,
                 struct llm_op **out) {
    if (out)
        *out = NULL;
    if (!l || l->closing || !req || !done || !req->user || !req->schema || !req->schema_name ||
        !valid_schema_name(req->schema_name) || !req->max_tokens || !req->deadline_ms ||
        !isfinite(req->temperature) || req->temperature < 0)
        return -1;
    struct llm_op *op = calloc(1, sizeof(*op));
    if (!op)
        return -1;
    op->system = strdup(req->system ? req->system : "");
    op->user = strdup(req->user);
    op->schema_name = strdup(req->schema_name);
    if (!op->system || !op->user || !op->schema_name) {
        free_op(op);
        return -1;
    }
    op->l = l;
    op->done = done;
    op->arg = arg;
    op->schema = req->schema;
    op->temperature = req->temperature;
    op->max_tokens = req->max_tokens;
    op->deadline_ms = now_ms() + req->deadline_ms;
    uv_timer_init(l->loop, &op->timer); /* cannot fail on a live loop */
    op->timer.data = op;
    op->next = l->ops;
    if (l->ops)
        l->ops->prev = op;
    l->ops = op;
    if (out)
        *out = op;

    op->in_generate = true;
    try_next_provider(op);
    op->in_generate = false;
    return 0;
}

void llm_cancel(struct llm_op *op) {
    if (!op || op->delivered || op->cancel_requested)
        return;
    op->cancel_requested = true;
    switch (op->phase) {
    case PHASE_CALLING:
        httpc_cancel(op->call); /* on_http_done follows with the cancellation */
        break;
    case PHASE_WAITING:
        snprintf(op->message, sizeof(op->message), "cancelled");
        finish(op, LLM_ECANCELED, true);
        break;
    case PHASE_FINISHED:
        /* done is already queued; it reports the cancellation instead. */
        json_decref(op->output);
        op->output = NULL;
        op->status = LLM_ECANCELED;
        snprintf(op->message, sizeof(op->message), "cancelled");
        break;
    }
}

size_t llm_status(const struct llm *l, struct llm_provider_status *out, size_t max) {
    if (!l)
        return 0;
    uint64_t now = now_ms();
    size_t n = 0;
    for (; n < l->n_providers && n < max; n++) {
        const struct provider *p = &l->providers[n];
        out[n] = (struct llm_provider_status){
            .name = p->cfg.name,
            .model = p->cfg.model,
            .breaker = breaker_state_at(&p->breaker, now),
            .consecutive_failures = p->breaker.consecutive_failures,
            .calls = p->calls,
            .failures = p->failures,
            .prompt_tokens = p->prompt_tokens,
            .completion_tokens = p->completion_tokens,
        };
    }
    return n;
}

size_t llm_provider_count(const struct llm *l) { return l ? l->n_providers : 0; }

void llm_close(struct llm *l) {
    if (!l || l->closing)
        return;
    l->closing = true;
    for (struct llm_op *op = l->ops; op; op = op->next)
        llm_cancel(op);
    if (!l->ops)
        free(l);
}
