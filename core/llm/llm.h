/* LLM providers behind one call: OpenAI (and any OpenAI-compatible server at
 * OPENAI_BASE_URL: Ollama, vLLM, llama.cpp), Anthropic and Gemini, each with
 * its own wire format and its own way to force JSON output (json_schema
 * response_format; a forced tool; responseMimeType + responseSchema).
 * Providers are tried in LLM_PROVIDERS order; each has a circuit breaker;
 * calls are retried with backoff (honouring Retry-After) unless the error
 * cannot heal (bad key, out of credit); the answer is validated against the
 * schema, the provider is asked once more with the validation errors, then
 * the next provider is tried.  One deadline covers the whole. */
#ifndef GTM_LLM_H
#define GTM_LLM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct httpc;
struct schema;
struct llm;
struct llm_op;

#define LLM_MAX_PROVIDERS 3

struct llm_provider_config {
    char name[16];           /* "openai", "anthropic", "gemini" */
    char api_key[256];       /* may be empty for an OpenAI-compatible local server */
    char base_url[512];
    char model[128];
};

struct llm_config {
    struct llm_provider_config providers[LLM_MAX_PROVIDERS];  /* in LLM_PROVIDERS order, configured ones only */
    size_t n_providers;
    unsigned breaker_threshold;      /* LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD, default 5 */
    unsigned breaker_recovery_s;     /* LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT, default 300 */
    unsigned attempts_per_provider;  /* transport/5xx/429 retries before failing over; default 2 */
};

/* Reads LLM_PROVIDERS (default "openai,anthropic,gemini"), {OPENAI,ANTHROPIC,
 * GEMINI}_API_KEY, _BASE_URL, _MODEL and the breaker settings.  A provider is
 * configured when its key is set (OpenAI also when OPENAI_BASE_URL is set).
 * 0, or -1 with a one-line reason naming the variable.  Zero configured
 * providers is not an error: generation then answers 503. */
int llm_config_from_env(struct llm_config *cfg, char *err, size_t errlen);

struct llm *llm_new(uv_loop_t *loop, struct httpc *httpc, const struct llm_config *cfg);

struct llm_request {
    const char *task;                /* for logs, e.g. "product_overview" */
    const char *system;              /* the system part of the prompt */
    const char *user;                /* the user part */
    const struct schema *schema;     /* the output's schema (borrowed) */
    const char *schema_name;         /* [a-zA-Z0-9_-]{1,64}, for OpenAI's json_schema */
    double temperature;              /* e.g. 0.2 */
    unsigned max_tokens;             /* e.g. 4096 */
    unsigned deadline_ms;            /* the whole call: retries, repair and failover included */
    const char *request_id;          /* for logs */
};

enum llm_status {
    LLM_OK = 0,
    LLM_EUNAVAILABLE = -1,   /* no provider configured, or every circuit open: 503 */
    LLM_ETIMEDOUT = -2,      /* the deadline passed: 504 */
    LLM_EINVALID = -3,       /* providers answered, none with a valid output: 502 */
    LLM_EFAILED = -4,        /* every provider failed (errors, refused credentials): 502 */
    LLM_ECANCELED = -5,
};

struct llm_result {
    int status;
    json_t *output;                  /* normalized (schema_normalize), borrowed during the callback */
    const char *provider;            /* the one that answered, or "" */
    const char *model;
    unsigned prompt_tokens;          /* summed over every attempt */
    unsigned completion_tokens;
    unsigned attempts;               /* HTTP calls made */
    unsigned retry_after_s;          /* with LLM_EUNAVAILABLE: when the first circuit half-opens */
    const char *message;             /* one line: what went wrong, per provider (on success: on the way), or "" */
};

typedef void (*llm_done_fn)(void *arg, const struct llm_result *res);

/* done runs exactly once, on the loop, never from inside this call.  0, or -1
 * when the request is malformed (done is then not called). */
int llm_generate(struct llm *l, const struct llm_request *req, llm_done_fn done, void *arg, struct llm_op **out);
/* done runs later with LLM_ECANCELED; calls in flight are cancelled. */
void llm_cancel(struct llm_op *op);

enum llm_breaker_state { LLM_CLOSED = 0, LLM_OPEN = 1, LLM_HALF_OPEN = 2 };
struct llm_provider_status {
    const char *name;
    const char *model;
    int breaker;                     /* llm_breaker_state */
    unsigned consecutive_failures;
    uint64_t calls, failures, prompt_tokens, completion_tokens;
};
size_t llm_status(const struct llm *l, struct llm_provider_status *out, size_t max);
size_t llm_provider_count(const struct llm *l);

/* Cancels everything, then frees once the last callback has run. */
void llm_close(struct llm *l);

#endif
