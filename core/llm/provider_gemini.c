/* Google Gemini generateContent.  JSON is forced with responseMimeType
 * application/json plus responseSchema, Gemini's OpenAPI 3.0 subset: upper-
 * case types, "nullable" instead of a null alternative, no $ref, no
 * additionalProperties, propertyOrdering so the answer's keys come in the
 * schema's order.  A schema that subset cannot carry (an object with no
 * listed properties) goes as plain JSON Schema in responseJsonSchema. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/llm_internal.h"

/* ---- JSON Schema -> responseSchema --------------------------------------- */

struct convert_ctx {
    bool lossy; /* something had no equivalent: use responseJsonSchema instead */
};

static json_t *convert_schema(struct convert_ctx *ctx, json_t *node);

static json_t *upper_type(const char *type) {
    char buf[16];
    size_t i = 0;
    for (; type[i] && i < sizeof(buf) - 1; i++)
        buf[i] = (char)toupper((unsigned char)type[i]);
    buf[i] = '\0';
    return json_string(buf);
}

static bool is_null_schema(json_t *s) {
    const char *type = json_string_value(json_object_get(s, "type"));
    return type && strcmp(type, "null") == 0 && json_object_size(s) <= 3;
}

/* Copies the keywords responseSchema knows from src into out. */
static void convert_keywords(struct convert_ctx *ctx, json_t *src, json_t *out, bool *nullable) {
    json_t *type = json_object_get(src, "type");
    json_t *enum_values = json_object_get(src, "enum");
    json_t *properties = json_object_get(src, "properties");
    json_t *items = json_object_get(src, "items");

    if (json_is_string(type)) {
        if (strcmp(json_string_value(type), "null") == 0)
            *nullable = true;
        else
            json_object_set_new(out, "type", upper_type(json_string_value(type)));
    } else if (json_is_array(type)) {
        size_t i;
        json_t *t;
        json_t *kinds = json_array();
        json_array_foreach(type, i, t) {
            if (!json_is_string(t))
                continue;
            if (strcmp(json_string_value(t), "null") == 0)
                *nullable = true;
            else
                json_array_append_new(kinds, json_string(json_string_value(t)));
        }
        if (json_array_size(kinds) == 1) {
            json_object_set_new(out, "type", upper_type(json_string_value(json_array_get(kinds, 0))));
        } else if (json_array_size(kinds) > 1) {
            json_t *any = json_array();
            json_array_foreach(kinds, i, t)
                json_array_append_new(any, json_pack("{s:o}", "type", upper_type(json_string_value(t))));
            json_object_set_new(out, "anyOf", any);
        }
        json_decref(kinds);
    } else if (!json_object_get(out, "type") && !json_object_get(src, "anyOf")) {
        if (properties)
            json_object_set_new(out, "type", json_string("OBJECT"));
        else if (items)
            json_object_set_new(out, "type", json_string("ARRAY"));
    }

    json_t *description = json_object_get(src, "description");
    if (json_is_string(description))
        json_object_set(out, "description", description);

    if (json_is_array(enum_values)) {
        json_t *kept = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(enum_values, i, v) {
            if (json_is_null(v))
                *nullable = true;
            else
                json_array_append(kept, v);
        }
        json_object_set_new(out, "enum", kept);
    }

    if (json_is_object(properties)) {
        json_t *props = json_object(), *order = json_array();
        const char *name;
        json_t *prop;
        json_object_foreach(properties, name, prop) {
            json_object_set_new(props, name, convert_schema(ctx, prop));
            json_array_append_new(order, json_string(name));
        }
        if (json_object_size(props) == 0)
            ctx->lossy = true; /* Gemini refuses an OBJECT with no properties */
        json_object_set_new(out, "properties", props);
        json_object_set_new(out, "propertyOrdering", order);
    } else if (type && json_is_string(type) && strcmp(json_string_value(type), "object") == 0) {
        ctx->lossy = true;
    }
    json_t *required = json_object_get(src, "required");
    if (json_is_array(required) && json_array_size(required))
        json_object_set(out, "required", required);
    if (json_is_object(items))
        json_object_set_new(out, "items", convert_schema(ctx, items));

    static const char *const counts[] = {"minItems", "maxItems", "minLength", "maxLength"};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        json_t *n = json_object_get(src, counts[i]);
        if (json_is_integer(n))
            json_object_set(out, counts[i], n);
    }
}

/* anyOf [X, {"type":"null"}] becomes X with nullable; other anyOf lists stay
 * (converted) as anyOf. */
static void convert_any_of(struct convert_ctx *ctx, json_t *any_of, json_t *out, bool *nullable) {
    json_t *kept = json_array();
    size_t i;
    json_t *alt;
    json_array_foreach(any_of, i, alt) {
        if (is_null_schema(alt))
            *nullable = true;
        else
            json_array_append(kept, alt);
    }
    if (json_array_size(kept) == 1) {
        convert_keywords(ctx, json_array_get(kept, 0), out, nullable);
        json_t *inner = json_array_get(kept, 0);
        if (json_is_array(json_object_get(inner, "anyOf")))
            convert_any_of(ctx, json_object_get(inner, "anyOf"), out, nullable);
    } else if (json_array_size(kept) > 1) {
        json_t *converted = json_array();
        json_array_foreach(kept, i, alt)
            json_array_append_new(converted, convert_schema(ctx, alt));
        json_object_set_new(out, "anyOf", converted);
    }
    json_decref(kept);
}

static json_t *convert_schema(struct convert_ctx *ctx, json_t *node) {
    json_t *out = json_object();
    if (!json_is_object(node)) {
        ctx->lossy = true; /* a boolean schema */
        return out;
    }
    bool nullable = false;
    json_t *any_of = json_object_get(node, "anyOf");
    if (json_is_array(any_of))
        convert_any_of(ctx, any_of, out, &nullable);
    convert_keywords(ctx, node, out, &nullable);
    if (nullable)
        json_object_set_new(out, "nullable", json_true());
    return out;
}

/* Sets responseSchema (or responseJsonSchema) in config.  -1 with err. */
static int set_schema(json_t *config, json_t *doc, char *err, size_t errlen) {
    json_t *inlined = llm_schema_inline_refs(doc, err, errlen);
    if (!inlined)
        return -1;
    struct convert_ctx ctx = {.lossy = false};
    json_t *converted = convert_schema(&ctx, inlined);
    if (ctx.lossy) {
        json_decref(converted);
        json_object_del(inlined, "$schema");
        json_object_set_new(config, "responseJsonSchema", inlined);
    } else {
        json_decref(inlined);
        json_object_set_new(config, "responseSchema", converted);
    }
    return 0;
}

/* ---- the request --------------------------------------------------------- */

static json_t *text_turn(const char *role, const char *text) {
    return json_pack("{s:s, s:[{s:s}]}", "role", role, "parts", "text", text);
}

static json_t *build_contents(const struct llm_prompt *p) {
    json_t *contents = json_array();
    json_array_append_new(contents, text_turn("user", p->user));
    if (p->repair_text) {
        if (p->previous_turn)
            json_array_append(contents, p->previous_turn);
        json_array_append_new(contents, text_turn("user", p->repair_text));
    }
    return contents;
}

static int gemini_build(const struct llm_provider_config *cfg, const struct llm_prompt *p,
                        struct llm_wire_request *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    json_t *config = json_pack("{s:f, s:I, s:s}", "temperature", p->temperature, "maxOutputTokens",
                               (json_int_t)p->max_tokens, "responseMimeType", "application/json");
    if (!config) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (set_schema(config, p->schema_doc, err, errlen) != 0) {
        json_decref(config);
        return -1;
    }
    json_t *body = json_object();
    if (p->system && *p->system)
        json_object_set_new(body, "systemInstruction",
                            json_pack("{s:[{s:s}]}", "parts", "text", p->system));
    json_object_set_new(body, "contents", build_contents(p));
    json_object_set_new(body, "generationConfig", config);

    char *path = NULL;
    if (asprintf(&path, "/v1beta/models/%s:generateContent", cfg->model) < 0)
        path = NULL;
    size_t h = 0;
    out->url = path ? llm_join_url(cfg->base_url, path) : NULL;
    free(path);
    out->headers[h++] = llm_header("Content-Type", "application/json");
    out->headers[h++] = llm_header("Accept", "application/json");
    if (cfg->api_key[0])
        out->headers[h++] = llm_header("x-goog-api-key", cfg->api_key);
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

/* error.details[]: RetryInfo's retryDelay and ErrorInfo's reason. */
static void read_details(json_t *details, struct llm_answer *out, const char **reason) {
    size_t i;
    json_t *d;
    json_array_foreach(details, i, d) {
        const char *type = json_string_value(json_object_get(d, "@type"));
        if (type && strstr(type, "RetryInfo")) {
            double s = llm_parse_duration(json_string_value(json_object_get(d, "retryDelay")));
            if (s >= 0)
                out->retry_after_s = s;
        }
        const char *r = json_string_value(json_object_get(d, "reason"));
        if (r)
            *reason = r;
    }
}

static void read_failure(const struct gtm_http_result *res, struct llm_answer *out) {
    llm_classify_http(res, out);
    if (res->error)
        return;
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *error = json_object_get(doc, "error");
    const char *status = json_string_value(json_object_get(error, "status"));
    const char *reason = NULL;
    read_details(json_object_get(error, "details"), out, &reason);
    static const char *const never_heal[] = {"PERMISSION_DENIED", "INVALID_ARGUMENT",
                                             "FAILED_PRECONDITION", "NOT_FOUND",
                                             "UNAUTHENTICATED", NULL};
    if (is_one_of(status, never_heal))
        out->outcome = LLM_ANSWER_FATAL;
    if (status)
        snprintf(out->detail, sizeof(out->detail), "HTTP %ld %s%s%s", res->status, status,
                 reason ? " " : "", reason ? reason : "");
    json_decref(doc);
}

static unsigned usage_field(json_t *usage, const char *name) {
    json_int_t v = json_integer_value(json_object_get(usage, name));
    return v > 0 && v < (json_int_t)UINT32_MAX ? (unsigned)v : 0;
}

/* The text of every part that is not a thought. */
static char *answer_text(json_t *parts) {
    size_t len = 0, i;
    json_t *part;
    json_array_foreach(parts, i, part)
        len += json_string_length(json_object_get(part, "text"));
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    text[0] = '\0';
    json_array_foreach(parts, i, part) {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t && !json_is_true(json_object_get(part, "thought")))
            strcat(text, t);
    }
    return text;
}

static void read_candidate(json_t *candidate, struct llm_answer *out) {
    const char *finish = json_string_value(json_object_get(candidate, "finishReason"));
    static const char *const blocked[] = {"SAFETY", "RECITATION", "BLOCKLIST",
                                          "PROHIBITED_CONTENT", "SPII", "LANGUAGE", NULL};
    if (is_one_of(finish, blocked)) {
        out->outcome = LLM_ANSWER_FATAL;
        snprintf(out->detail, sizeof(out->detail), "answer blocked (%s)", finish);
        return;
    }
    char *text = answer_text(json_object_get(json_object_get(candidate, "content"), "parts"));
    if (text && *text)
        out->assistant_turn = text_turn("model", text);
    llm_answer_from_text(out, text, finish && strcmp(finish, "MAX_TOKENS") == 0, "maxOutputTokens");
    free(text);
}

static void gemini_parse(const struct gtm_http_result *res, struct llm_answer *out) {
    if (res->error || res->status < 200 || res->status > 299) {
        read_failure(res, out);
        return;
    }
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    if (!json_is_object(doc)) {
        out->outcome = LLM_ANSWER_RETRY;
        snprintf(out->detail, sizeof(out->detail), "HTTP %ld with a body that is not JSON",
                 res->status);
        json_decref(doc);
        return;
    }
    json_t *usage = json_object_get(doc, "usageMetadata");
    out->prompt_tokens = usage_field(usage, "promptTokenCount");
    out->completion_tokens = usage_field(usage, "candidatesTokenCount") +
                             usage_field(usage, "thoughtsTokenCount");
    json_t *candidate = json_array_get(json_object_get(doc, "candidates"), 0);
    if (json_is_object(candidate)) {
        read_candidate(candidate, out);
    } else {
        const char *block = json_string_value(
            json_object_get(json_object_get(doc, "promptFeedback"), "blockReason"));
        out->outcome = block ? LLM_ANSWER_FATAL : LLM_ANSWER_RETRY;
        snprintf(out->detail, sizeof(out->detail), "%s%s",
                 block ? "prompt blocked: " : "no candidate in the answer", block ? block : "");
    }
    json_decref(doc);
}

const struct llm_provider_ops llm_gemini_ops = {
    .name = "gemini",
    .default_base_url = "https://generativelanguage.googleapis.com",
    .default_model = "gemini-2.5-flash",
    .build = gemini_build,
    .parse = gemini_parse,
};
