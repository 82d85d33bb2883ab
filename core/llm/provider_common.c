/* What the three wire formats share: finding the JSON in an answer's text,
 * reading retry hints, classifying statuses, building URLs and headers, and
 * inlining $refs for the providers that cannot follow them. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gtm/module.h"
#include "llm/llm_internal.h"

void llm_answer_init(struct llm_answer *a) {
    memset(a, 0, sizeof(*a));
    a->retry_after_s = -1;
}

void llm_answer_clear(struct llm_answer *a) {
    json_decref(a->output);
    json_decref(a->assistant_turn);
    llm_answer_init(a);
}

void llm_wire_request_free(struct llm_wire_request *w) {
    free(w->url);
    free(w->body);
    for (size_t i = 0; i < LLM_MAX_HEADERS && w->headers[i]; i++)
        free(w->headers[i]);
    memset(w, 0, sizeof(*w));
}

const struct llm_provider_ops *llm_provider_ops_find(const char *name) {
    static const struct llm_provider_ops *const all[] = {&llm_openai_ops, &llm_anthropic_ops,
                                                         &llm_gemini_ops};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

/* ---- the JSON in an answer ----------------------------------------------- */

static json_t *parse_span(const char *start, size_t len, json_error_t *jerr) {
    while (len && isspace((unsigned char)*start)) {
        start++;
        len--;
    }
    while (len && isspace((unsigned char)start[len - 1]))
        len--;
    if (!len)
        return NULL;
    return json_loadb(start, len, JSON_DECODE_ANY, jerr);
}

/* The body of the first ``` fence (its info string, e.g. "json", skipped). */
static json_t *parse_fenced(const char *text) {
    const char *open = strstr(text, "```");
    if (!open)
        return NULL;
    const char *body = strchr(open + 3, '\n');
    if (!body)
        return NULL;
    body++;
    const char *close = strstr(body, "```");
    if (!close)
        return NULL;
    json_error_t jerr;
    return parse_span(body, (size_t)(close - body), &jerr);
}

/* The first balanced {...}, skipping braces inside strings. */
static json_t *parse_embedded_object(const char *text) {
    const char *open = strchr(text, '{');
    if (!open)
        return NULL;
    int depth = 0;
    bool in_string = false;
    for (const char *p = open; *p; p++) {
        if (in_string) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in_string = false;
            continue;
        }
        if (*p == '"') {
            in_string = true;
        } else if (*p == '{') {
            depth++;
        } else if (*p == '}' && --depth == 0) {
            json_error_t jerr;
            return parse_span(open, (size_t)(p - open) + 1, &jerr);
        }
    }
    return NULL;
}

json_t *llm_extract_json(const char *text, char *err, size_t errlen) {
    if (!text || !*text) {
        snprintf(err, errlen, "the answer is empty");
        return NULL;
    }
    json_error_t whole_err;
    json_t *v = parse_span(text, strlen(text), &whole_err);
    if (v)
        return v;
    /* Compatible servers sometimes wrap the object in prose or a fence. */
    if ((v = parse_fenced(text)) || (v = parse_embedded_object(text))) {
        if (json_is_object(v))
            return v;
        json_decref(v);
    }
    if (whole_err.position >= (int)strlen(text) || strstr(whole_err.text, "end of file"))
        snprintf(err, errlen, "the answer is not complete JSON (cut off after %zu bytes)",
                 strlen(text));
    else
        snprintf(err, errlen, "the answer is not valid JSON: %s at line %d column %d",
                 whole_err.text, whole_err.line, whole_err.column);
    return NULL;
}

/* ---- retry hints --------------------------------------------------------- */

double llm_parse_retry_after(const char *value, double now_unix) {
    if (!value)
        return -1;
    while (isspace((unsigned char)*value))
        value++;
    if (!*value)
        return -1;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        double s = strtod(value, &end);
        while (isspace((unsigned char)*end))
            end++;
        if (!errno && !*end && isfinite(s) && s >= 0)
            return s;
        return -1;
    }
    time_t when = curl_getdate(value, NULL);
    if (when == (time_t)-1)
        return -1;
    double s = (double)when - now_unix;
    return s > 0 ? s : 0;
}

double llm_parse_duration(const char *value) {
    if (!value)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || !isfinite(v) || v < 0)
        return -1;
    if (strcmp(end, "s") == 0)
        return v;
    if (strcmp(end, "ms") == 0)
        return v / 1000.0;
    return -1;
}

/* ---- statuses ------------------------------------------------------------ */

bool llm_status_retryable(long status) {
    return status == 408 || status == 409 || status == 429 || status >= 500;
}

static double retry_hint(const struct gtm_http_result *res) {
    if (!res->header)
        return -1;
    const char *ms = res->header(res, "retry-after-ms");
    if (ms) {
        char *end;
        errno = 0;
        double v = strtod(ms, &end);
        if (!errno && end != ms && isfinite(v) && v >= 0)
            return v / 1000.0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return llm_parse_retry_after(res->header(res, "retry-after"), (double)ts.tv_sec);
}

void llm_classify_http(const struct gtm_http_result *res, struct llm_answer *out) {
    if (res->error) {
        out->timed_out = res->error == GTM_ETIMEDOUT;
        /* A body over the cap would be over it again. */
        out->outcome = res->error == GTM_ETOOBIG ? LLM_ANSWER_FATAL : LLM_ANSWER_RETRY;
        snprintf(out->detail, sizeof(out->detail), "%s",
                 out->timed_out ? "timed out"
                                : (res->error_text && *res->error_text ? res->error_text
                                                                       : "transport error"));
        return;
    }
    out->outcome = llm_status_retryable(res->status) ? LLM_ANSWER_RETRY : LLM_ANSWER_FATAL;
    out->retry_after_s = retry_hint(res);
    snprintf(out->detail, sizeof(out->detail), "HTTP %ld", res->status);
}

/* ---- request pieces ------------------------------------------------------ */

char *llm_header(const char *name, const char *value) {
    char *h = NULL;
    if (asprintf(&h, "%s: %s", name, value) < 0)
        return NULL;
    return h;
}

char *llm_join_url(const char *base_url, const char *suffix) {
    size_t n = strlen(base_url);
    while (n && base_url[n - 1] == '/')
        n--;
    char *url = NULL;
    if (asprintf(&url, "%.*s%s", (int)n, base_url, suffix) < 0)
        return NULL;
    return url;
}

int llm_wire_set_body(struct llm_wire_request *w, json_t *body) {
    if (!body)
        return -1;
    w->body = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(body);
    if (!w->body)
        return -1;
    w->body_len = strlen(w->body);
    return 0;
}

bool llm_contains_nocase(const char *haystack, const char *needle) {
    return haystack && strcasestr(haystack, needle) != NULL;
}

/* ---- $ref inlining ------------------------------------------------------- */

#define INLINE_MAX_DEPTH 32

static json_t *resolve_ref(json_t *root, const char *ref) {
    const char *name;
    json_t *defs;
    if (strncmp(ref, "#/$defs/", 8) == 0) {
        name = ref + 8;
        defs = json_object_get(root, "$defs");
    } else if (strncmp(ref, "#/definitions/", 14) == 0) {
        name = ref + 14;
        defs = json_object_get(root, "definitions");
    } else {
        return NULL;
    }
    if (strchr(name, '/') || strchr(name, '~'))
        return NULL; /* nested pointers: not produced by the schemas we serve */
    return json_object_get(defs, name);
}

/* Keywords whose values are data, not schemas: copied as they are. */
static bool is_data_keyword(const char *key) {
    return strcmp(key, "enum") == 0 || strcmp(key, "const") == 0 ||
           strcmp(key, "default") == 0 || strcmp(key, "examples") == 0 ||
           strcmp(key, "required") == 0;
}

/* Keywords whose values map names to schemas. */
static bool is_schema_map_keyword(const char *key) {
    return strcmp(key, "properties") == 0 || strcmp(key, "patternProperties") == 0;
}

static json_t *inline_schema(json_t *root, json_t *node, int depth, char *err, size_t errlen);

/* A keyword's value: a schema, a list of schemas, or a scalar (true, 3). */
static json_t *inline_value(json_t *root, json_t *value, int depth, char *err, size_t errlen) {
    if (json_is_object(value))
        return inline_schema(root, value, depth, err, errlen);
    if (!json_is_array(value))
        return json_deep_copy(value);
    json_t *out = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item) {
        json_t *copy = inline_value(root, item, depth, err, errlen);
        if (!copy || json_array_append_new(out, copy) != 0) {
            json_decref(copy);
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *inline_map(json_t *root, json_t *map, int depth, char *err, size_t errlen) {
    if (!json_is_object(map))
        return json_deep_copy(map);
    json_t *out = json_object();
    const char *name;
    json_t *schema;
    json_object_foreach(map, name, schema) {
        json_t *copy = inline_value(root, schema, depth, err, errlen);
        if (!copy || json_object_set_new(out, name, copy) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *inline_schema(json_t *root, json_t *node, int depth, char *err, size_t errlen) {
    if (depth > INLINE_MAX_DEPTH) {
        snprintf(err, errlen, "the schema nests too deeply (a recursive $ref?)");
        return NULL;
    }
    json_t *out;
    json_t *ref = json_object_get(node, "$ref");
    if (json_is_string(ref)) {
        json_t *target = resolve_ref(root, json_string_value(ref));
        if (!json_is_object(target)) {
            snprintf(err, errlen, "cannot resolve $ref %s", json_string_value(ref));
            return NULL;
        }
        out = inline_schema(root, target, depth + 1, err, errlen);
    } else {
        out = json_object();
    }
    if (!out)
        return NULL;
    /* Siblings of a $ref (a property's description) refine its target. */
    const char *key;
    json_t *value;
    json_object_foreach(node, key, value) {
        if (strcmp(key, "$ref") == 0 || strcmp(key, "$defs") == 0 || strcmp(key, "definitions") == 0)
            continue;
        json_t *copy;
        if (is_data_keyword(key))
            copy = json_deep_copy(value);
        else if (is_schema_map_keyword(key))
            copy = inline_map(root, value, depth + 1, err, errlen);
        else
            copy = inline_value(root, value, depth + 1, err, errlen);
        if (!copy || json_object_set_new(out, key, copy) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

json_t *llm_schema_inline_refs(json_t *doc, char *err, size_t errlen) {
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "the schema is not a JSON object");
        return NULL;
    }
    return inline_schema(doc, doc, 0, err, errlen);
}

void llm_answer_from_text(struct llm_answer *out, const char *text, bool cut_off, const char *cap_name) {
    if (cut_off) {
        out->outcome = LLM_ANSWER_INVALID;
        snprintf(out->detail, sizeof(out->detail), "the answer was cut off at %s", cap_name);
        return;
    }
    char why[160];
    out->output = llm_extract_json(text, why, sizeof(why));
    out->outcome = out->output ? LLM_ANSWER_OK : LLM_ANSWER_INVALID;
    snprintf(out->detail, sizeof(out->detail), "%s", out->output ? "answered" : why);
}
