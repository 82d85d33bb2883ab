/* Anthropic Messages.  JSON is forced with one tool whose input_schema is the
 * output's schema and a tool_choice naming it; the answer is the tool_use
 * block's input.  A repair turn replays that tool_use and answers it with an
 * is_error tool_result listing the problems, the shape the API expects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/llm_internal.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define TOOL_NAME_MAX 64

/* Tool names follow [a-zA-Z0-9_-]{1,64}, like OpenAI's schema names. */
static void tool_name(const char *schema_name, char out[TOOL_NAME_MAX + 1]) {
    snprintf(out, TOOL_NAME_MAX + 1, "emit_%s", schema_name && *schema_name ? schema_name : "result");
    for (char *p = out; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '_' || *p == '-';
        if (!ok)
            *p = '_';
    }
}

/* The tool's input_schema: $refs inlined (so nothing depends on how the API
 * resolves them) and "$schema"/"$id" dropped.  Tool input is always an
 * object, so the schema must describe one. */
static json_t *input_schema(json_t *doc, char *err, size_t errlen) {
    json_t *type = json_object_get(doc, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "object") != 0) {
        snprintf(err, errlen, "anthropic: the schema's root must be an object");
        return NULL;
    }
    json_t *schema = llm_schema_inline_refs(doc, err, errlen);
    if (schema) {
        json_object_del(schema, "$schema");
        json_object_del(schema, "$id");
    }
    return schema;
}

static const char *previous_tool_use_id(json_t *previous_turn) {
    size_t i;
    json_t *block;
    json_array_foreach(json_object_get(previous_turn, "content"), i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));
        if (type && strcmp(type, "tool_use") == 0)
            return json_string_value(json_object_get(block, "id"));
    }
    return NULL;
}

static json_t *build_messages(const struct llm_prompt *p) {
    json_t *messages = json_pack("[{s:s, s:s}]", "role", "user", "content", p->user);
    if (!messages || !p->repair_text)
        return messages;
    const char *tool_use_id = NULL;
    if (p->previous_turn) {
        json_array_append(messages, p->previous_turn);
        tool_use_id = previous_tool_use_id(p->previous_turn);
    }
    json_t *reply;
    if (tool_use_id)
        reply = json_pack("{s:s, s:[{s:s, s:s, s:b, s:s}]}", "role", "user", "content", "type",
                          "tool_result", "tool_use_id", tool_use_id, "is_error", 1, "content",
                          p->repair_text);
    else
        reply = json_pack("{s:s, s:s}", "role", "user", "content", p->repair_text);
    json_array_append_new(messages, reply);
    return messages;
}

static int anthropic_build(const struct llm_provider_config *cfg, const struct llm_prompt *p,
                           struct llm_wire_request *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    json_t *schema = input_schema(p->schema_doc, err, errlen);
    if (!schema)
        return -1;
    char name[TOOL_NAME_MAX + 1];
    tool_name(p->schema_name, name);
    /* Anthropic's temperature stops at 1. */
    double temperature = p->temperature > 1.0 ? 1.0 : p->temperature;

    json_t *body = json_pack("{s:s, s:I, s:f, s:o, s:[{s:s, s:s, s:o}], s:{s:s, s:s}}",
                             "model", cfg->model, "max_tokens", (json_int_t)p->max_tokens,
                             "temperature", temperature, "messages", build_messages(p),
                             "tools", "name", name, "description",
                             "Record the answer. Its input is the whole answer.",
                             "input_schema", schema,
                             "tool_choice", "type", "tool", "name", name);
    if (body && p->system && *p->system)
        json_object_set_new(body, "system", json_string(p->system));

    size_t h = 0;
    out->url = llm_join_url(cfg->base_url, "/v1/messages");
    out->headers[h++] = llm_header("Content-Type", "application/json");
    out->headers[h++] = llm_header("Accept", "application/json");
    out->headers[h++] = llm_header("anthropic-version", ANTHROPIC_VERSION);
    if (cfg->api_key[0])
        out->headers[h++] = llm_header("x-api-key", cfg->api_key);
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

static bool is_one_of(const char *s, const char *const *list) {
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static void read_failure(const struct gtm_http_result *res, struct llm_answer *out) {
    llm_classify_http(res, out);
    if (res->error)
        return;
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *error = json_object_get(doc, "error");
    const char *type = json_string_value(json_object_get(error, "type"));
    const char *spend = json_string_value(
        json_object_get(json_object_get(error, "details"), "error_code"));
    static const char *const never_heal[] = {"authentication_error", "permission_error",
                                             "billing_error", "not_found_error",
                                             "invalid_request_error", NULL};
    if (is_one_of(type, never_heal) || (spend && strcmp(spend, "enforced_spend_limit_reached") == 0))
        out->outcome = LLM_ANSWER_FATAL;
    if (type)
        snprintf(out->detail, sizeof(out->detail), "HTTP %ld %s", res->status,
                 spend ? spend : type);
    json_decref(doc);
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

/* Text blocks joined, for answers that came without the tool. */
static char *joined_text(json_t *content) {
    size_t len = 0, i;
    json_t *block;
    json_array_foreach(content, i, block)
        len += json_string_length(json_object_get(block, "text"));
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    text[0] = '\0';
    json_array_foreach(content, i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));
        const char *t = json_string_value(json_object_get(block, "text"));
        if (t && type && strcmp(type, "text") == 0)
            strcat(text, t);
    }
    return text;
}

static json_t *find_tool_use(json_t *content) {
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));
        if (type && strcmp(type, "tool_use") == 0)
            return block;
    }
    return NULL;
}

static void read_content(json_t *doc, struct llm_answer *out) {
    json_t *content = json_object_get(doc, "content");
    const char *stop = json_string_value(json_object_get(doc, "stop_reason"));
    if (stop && strcmp(stop, "refusal") == 0) {
        out->outcome = LLM_ANSWER_FATAL;
        snprintf(out->detail, sizeof(out->detail), "refused to answer");
        return;
    }
    json_t *tool_use = find_tool_use(content);
    if (tool_use)
        out->assistant_turn = json_pack("{s:s, s:[O]}", "role", "assistant", "content", tool_use);
    if (stop && strcmp(stop, "max_tokens") == 0) {
        out->outcome = LLM_ANSWER_INVALID;
        snprintf(out->detail, sizeof(out->detail), "the answer was cut off at max_tokens");
        return;
    }
    json_t *input = json_object_get(tool_use, "input");
    if (json_is_object(input)) {
        out->output = json_deep_copy(input);
        out->outcome = LLM_ANSWER_OK;
        snprintf(out->detail, sizeof(out->detail), "answered");
        return;
    }
    char *text = joined_text(content);
    char why[160] = "the answer has no tool_use block";
    if (text && *text) {
        if (!out->assistant_turn)
            out->assistant_turn = json_pack("{s:s, s:s}", "role", "assistant", "content", text);
        out->output = llm_extract_json(text, why, sizeof(why));
    }
    free(text);
    out->outcome = out->output ? LLM_ANSWER_OK : LLM_ANSWER_INVALID;
    snprintf(out->detail, sizeof(out->detail), "%s", out->output ? "answered" : why);
}

static void anthropic_parse(const struct gtm_http_result *res, struct llm_answer *out) {
    if (res->error || res->status < 200 || res->status > 299) {
        read_failure(res, out);
        return;
    }
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    if (!json_is_array(json_object_get(doc, "content"))) {
        out->outcome = LLM_ANSWER_RETRY;
        snprintf(out->detail, sizeof(out->detail), "HTTP %ld without a message in the body",
                 res->status);
        json_decref(doc);
        return;
    }
    json_t *usage = json_object_get(doc, "usage");
    out->prompt_tokens = usage_field(usage, "input_tokens") +
                         usage_field(usage, "cache_creation_input_tokens") +
                         usage_field(usage, "cache_read_input_tokens");
    out->completion_tokens = usage_field(usage, "output_tokens");
    read_content(doc, out);
    json_decref(doc);
}

const struct llm_provider_ops llm_anthropic_ops = {
    .name = "anthropic",
    .default_base_url = "https://api.anthropic.com",
    .default_model = "claude-sonnet-4-5",
    .build = anthropic_build,
    .parse = anthropic_parse,
};
