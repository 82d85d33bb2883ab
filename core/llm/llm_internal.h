/* Internal to core/llm: what the orchestrator (llm.c) needs from each wire
 * format, the circuit breaker, and helpers the providers share.  Providers
 * know nothing of struct schema: the orchestrator hands them JSON documents,
 * which keeps them testable without the schema library. */
#ifndef GTM_LLM_INTERNAL_H
#define GTM_LLM_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gtm/host.h"
#include "llm/llm.h"

/* ---- one exchange with a provider --------------------------------------- */

struct llm_prompt {
    const char *system;            /* may be NULL or "" */
    const char *user;
    json_t *schema_doc;            /* the output's JSON Schema (borrowed) */
    json_t *openai_strict;         /* schema_openai_strict's rewrite, or NULL: json_object mode */
    const char *schema_name;
    double temperature;
    unsigned max_tokens;
    /* The repair turn, when the previous answer was unusable: the provider's
     * own assistant message (from llm_answer.assistant_turn) and the user
     * text listing what was wrong.  Both NULL on a first attempt. */
    json_t *previous_turn;
    const char *repair_text;
};

#define LLM_MAX_HEADERS 6

struct llm_wire_request {
    char *url;
    char *body;
    size_t body_len;
    char *headers[LLM_MAX_HEADERS + 1]; /* "Name: value", NULL-terminated; each owned */
};
void llm_wire_request_free(struct llm_wire_request *w);

enum llm_outcome {
    LLM_ANSWER_OK,        /* output holds the answer's JSON (not yet checked against the schema) */
    LLM_ANSWER_INVALID,   /* answered, but no usable JSON (not JSON, truncated, empty): worth a repair turn */
    LLM_ANSWER_RETRY,     /* transient: the same request may succeed later */
    LLM_ANSWER_FATAL,     /* will not heal for this provider (key, credit, refusal, bad request) */
};

struct llm_answer {
    enum llm_outcome outcome;
    json_t *output;             /* LLM_ANSWER_OK: owned */
    json_t *assistant_turn;     /* OK or INVALID: the provider-shaped message to replay on repair; owned */
    unsigned prompt_tokens, completion_tokens;
    double retry_after_s;       /* server's wait hint; < 0 when none */
    bool timed_out;             /* the transport gave up on time */
    char detail[200];           /* one line for the summary: "HTTP 429 rate_limit_exceeded", "refusal", ... */
};
void llm_answer_init(struct llm_answer *a);
void llm_answer_clear(struct llm_answer *a);

struct llm_provider_ops {
    const char *name;
    const char *default_base_url;
    const char *default_model;
    /* 0, or -1 with err (e.g. a schema that cannot be expressed). */
    int (*build)(const struct llm_provider_config *cfg, const struct llm_prompt *p,
                 struct llm_wire_request *out, char *err, size_t errlen);
    /* Classifies res (any status or transport error) into *out, which the
     * caller has initialised. */
    void (*parse)(const struct gtm_http_result *res, struct llm_answer *out);
};

extern const struct llm_provider_ops llm_openai_ops;
extern const struct llm_provider_ops llm_anthropic_ops;
extern const struct llm_provider_ops llm_gemini_ops;

/* The ops for a provider name, or NULL. */
const struct llm_provider_ops *llm_provider_ops_find(const char *name);

/* ---- helpers shared by the providers (provider_common.c) ----------------- */

/* The JSON object in text: the whole text, a ```json fenced block, or the
 * first balanced {...} with text around it.  New reference, or NULL with err. */
json_t *llm_extract_json(const char *text, char *err, size_t errlen);
/* Settles out from an answer's text: invalid when the provider cut it off at
 * its token cap (named in the reason), else the JSON found in it. */
void llm_answer_from_text(struct llm_answer *out, const char *text, bool cut_off, const char *cap_name);

/* Seconds from a Retry-After value (delta-seconds or HTTP-date, relative to
 * now_unix), or -1 when absent or unreadable. */
double llm_parse_retry_after(const char *value, double now_unix);
/* Seconds from a duration like "37s", "1.5s", "644ms", or -1. */
double llm_parse_duration(const char *value);

/* Fills out for a result that carries no answer: transport errors and non-2xx
 * statuses whose body says nothing more specific.  Sets outcome, detail,
 * timed_out and retry_after_s (from Retry-After). */
void llm_classify_http(const struct gtm_http_result *res, struct llm_answer *out);
/* true for the statuses worth retrying: 408, 409, 429, 5xx. */
bool llm_status_retryable(long status);

/* "Name: value" as a new string, NULL when out of memory. */
char *llm_header(const char *name, const char *value);
/* base_url without a trailing slash, then suffix; NULL when out of memory. */
char *llm_join_url(const char *base_url, const char *suffix);
/* body serialised compactly (the reference is stolen); -1 when out of memory. */
int llm_wire_set_body(struct llm_wire_request *w, json_t *body);
/* strstr, ignoring ASCII case. */
bool llm_contains_nocase(const char *haystack, const char *needle);

/* A copy of doc with every "#/$defs/..." (or "#/definitions/...") $ref
 * replaced by its target and $defs dropped.  NULL with err for a recursive
 * or dangling $ref. */
json_t *llm_schema_inline_refs(json_t *doc, char *err, size_t errlen);

/* ---- circuit breaker (breaker.c) ---------------------------------------- */

struct llm_breaker {
    enum llm_breaker_state state;
    unsigned consecutive_failures;
    uint64_t last_failure_ms;
    unsigned threshold;
    uint64_t recovery_ms;
};

void breaker_init(struct llm_breaker *b, unsigned threshold, unsigned recovery_s);
/* May a call go through now?  Moves OPEN to HALF_OPEN once the recovery time
 * has passed since the last failure. */
bool breaker_allow(struct llm_breaker *b, uint64_t now_ms);
void breaker_success(struct llm_breaker *b);
void breaker_failure(struct llm_breaker *b, uint64_t now_ms);
/* The state a call would see at now_ms, without changing anything. */
enum llm_breaker_state breaker_state_at(const struct llm_breaker *b, uint64_t now_ms);
/* Milliseconds until an OPEN breaker half-opens (0 when not OPEN). */
uint64_t breaker_ms_until_half_open(const struct llm_breaker *b, uint64_t now_ms);

#endif
