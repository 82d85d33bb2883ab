/* OpenAI Chat Completions, and the compatible servers (Ollama, vLLM,
 * llama.cpp, LiteLLM) that speak it at another base URL.  JSON is forced with
 * a strict json_schema response_format when the schema can be expressed that
 * way, else with json_object mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/llm_internal.h"

#define JSON_MODE_HINT "Respond with a single JSON object."

/* The real API wants max_completion_tokens (newer models refuse max_tokens);
 * compatible servers often know only max_tokens. */
static bool is_official_api(const char *base_url) {
    return llm_contains_nocase(base_url, "://api.openai.com");
}

static json_t *text_message(const char *role, const char *content) {
    return json_pack("{s:s, s:s}", "role", role, "content", content);
}

static json_t *response_format(const struct llm_prompt *p) {
    if (!p->openai_strict)
        return json_pack("{s:s}", "type", "json_object");
    return json_pack("{s:s, s:{s:s, s:b, s:O}}", "type", "json_schema", "json_schema", "name",
                     p->schema_name, "strict", 1, "schema", p->openai_strict);
}

static json_t *build_messages(const struct llm_prompt *p) {
    json_t *messages = json_array();
    if (p->system && *p->system)
        json_array_append_new(messages, text_message("system", p->system));

    /* json_object mode answers 400 unless the conversation mentions JSON. */
    bool needs_hint = !p->openai_strict && !llm_contains_nocase(p->system, "JSON") &&
                      !llm_contains_nocase(p->user, "JSON");
    if (needs_hint) {
        char *user = NULL;
        if (asprintf(&user, "%s\n\n%s", p->user, JSON_MODE_HINT) < 0) {
            json_decref(messages);
            return NULL;
        }
        json_array_append_new(messages, text_message("user", user));
        free(user);
    } else {
        json_array_append_new(messages, text_message("user", p->user));
    }
    if (p->repair_text) {
        if (p->previous_turn)
            json_array_append(messages, p->previous_turn);
        json_array_append_new(messages, text_message("user", p->repair_text));
    }
    return messages;
}

static int openai_build(const struct llm_provider_config *cfg, const struct llm_prompt *p,
                        struct llm_wire_request *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    json_t *messages = build_messages(p);
    json_t *format = response_format(p);
    json_t *body = json_object();
    if (!messages || !format || !body) {
        json_decref(messages);
        json_decref(format);
        json_decref(body);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_object_set_new(body, "model", json_string(cfg->model));
    json_object_set_new(body, "messages", messages);
    json_object_set_new(body, "temperature", json_real(p->temperature));
    json_object_set_new(body, is_official_api(cfg->base_url) ? "max_completion_tokens" : "max_tokens",
                        json_integer(p->max_tokens));
    json_object_set_new(body, "response_format", format);

    size_t h = 0;
    out->url = llm_join_url(cfg->base_url, "/chat/completions");
    out->headers[h++] = llm_header("Content-Type", "application/json");
    out->headers[h++] = llm_header("Accept", "application/json");
    if (cfg->api_key[0]) {
        char bearer[300];
        snprintf(bearer, sizeof(bearer), "Bearer %s", cfg->api_key);
        out->headers[h++] = llm_header("Authorization", bearer);
    }
    bool ok = out->url && llm_wire_set_body(out, body) == 0;
    for (size_t i = 0; i < h; i++)
        ok = ok && out->headers[i];
    if (!ok) {
        llm_wire_request_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- the answer ---------------------------------------------------------- */

/* {"error":{"type","code","message"}}, or the flat {"object":"error",...} of
 * older vLLM.  The server's message is left out of the detail: for key errors
 * it quotes part of the key. */
static void read_error_body(json_t *doc, const struct gtm_http_result *res, struct llm_answer *out) {
    json_t *error = json_object_get(doc, "error");
    if (!json_is_object(error))
        error = doc;
    const char *type = json_string_value(json_object_get(error, "type"));
    const char *code = json_string_value(json_object_get(error, "code"));
    bool no_credit = (type && strcmp(type, "insufficient_quota") == 0) ||
                     (code && (strcmp(code, "insufficient_quota") == 0 ||
                               strcmp(code, "credit_balance_exhausted") == 0));
    if (no_credit)
        out->outcome = LLM_ANSWER_FATAL;
    const char *what = code ? code : type;
    if (what)
        snprintf(out->detail, sizeof(out->detail), "HTTP %ld %s", res->status, what);
}

static void read_failure(const struct gtm_http_result *res, struct llm_answer *out) {
    llm_classify_http(res, out);
    if (res->error)
        return;
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    if (doc) {
        read_error_body(doc, res, out);
        json_decref(doc);
    }
    const char *should_retry = res->header ? res->header(res, "x-should-retry") : NULL;
    if (should_retry && strcasecmp(should_retry, "true") == 0)
        out->outcome = LLM_ANSWER_RETRY;
    else if (should_retry && strcasecmp(should_retry, "false") == 0)
        out->outcome = LLM_ANSWER_FATAL;
}

static unsigned usage_field(json_t *usage, const char *name) {
    json_int_t v = json_integer_value(json_object_get(usage, name));
    return v > 0 && v < (json_int_t)UINT32_MAX ? (unsigned)v : 0;
}

/* content is a string, or (some compatible servers) a list of text parts.
 * New string, or NULL when there is no text. */
static char *content_text(json_t *content) {
    if (json_is_string(content))
        return strdup(json_string_value(content));
    if (!json_is_array(content))
        return NULL;
    size_t len = 0, i;
    json_t *part;
    json_array_foreach(content, i, part)
        len += json_string_length(json_object_get(part, "text"));
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    text[0] = '\0';
    json_array_foreach(content, i, part) {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t)
            strcat(text, t);
    }
    return text;
}

static void read_choice(json_t *choice, struct llm_answer *out) {
    json_t *message = json_object_get(choice, "message");
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    json_t *refusal = json_object_get(message, "refusal");
    if (json_is_string(refusal) && json_string_length(refusal)) {
        out->outcome = LLM_ANSWER_FATAL;
        snprintf(out->detail, sizeof(out->detail), "refused to answer");
        return;
    }
    if (finish && strcmp(finish, "content_filter") == 0) {
        out->outcome = LLM_ANSWER_FATAL;
        snprintf(out->detail, sizeof(out->detail), "answer blocked by the content filter");
        return;
    }
    char *text = content_text(json_object_get(message, "content"));
    if (text && *text)
        out->assistant_turn = text_message("assistant", text);
    llm_answer_from_text(out, text, finish && strcmp(finish, "length") == 0, "max_tokens");
    free(text);
}

static void openai_parse(const struct gtm_http_result *res, struct llm_answer *out) {
    if (res->error || res->status < 200 || res->status > 299) {
        read_failure(res, out);
        return;
    }
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    if (!json_is_object(choice)) {
        /* A gateway's page or a cut-off body: the next try may be whole. */
        out->outcome = LLM_ANSWER_RETRY;
        snprintf(out->detail, sizeof(out->detail), "HTTP %ld without a completion in the body",
                 res->status);
        json_decref(doc);
        return;
    }
    json_t *usage = json_object_get(doc, "usage");
    out->prompt_tokens = usage_field(usage, "prompt_tokens");
    out->completion_tokens = usage_field(usage, "completion_tokens");
    read_choice(choice, out);
    json_decref(doc);
}

const struct llm_provider_ops llm_openai_ops = {
    .name = "openai",
    .default_base_url = "https://api.openai.com/v1",
    .default_model = "gpt-4.1-nano",
    .build = openai_build,
    .parse = openai_parse,
};
