/* The three wire formats without a network: requests built for a prompt and
 * schema compared with golden JSON, answers of every kind classified; plus
 * the shared helpers, the circuit breaker and the environment reader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gtm/module.h"
#include "llm/llm_internal.h"

/* ---- fixtures ------------------------------------------------------------ */

static json_t *must_parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (!v)
        fail_msg("bad JSON in test: %s: %s", e.text, text);
    return v;
}

static void assert_json_eq(json_t *actual, const char *expected_text) {
    json_t *expected = must_parse(expected_text);
    if (!json_equal(actual, expected)) {
        char *a = json_dumps(actual, JSON_COMPACT | JSON_SORT_KEYS);
        char *e = json_dumps(expected, JSON_COMPACT | JSON_SORT_KEYS);
        print_error("actual:   %s\nexpected: %s\n", a, e);
        free(a);
        free(e);
        json_decref(expected);
        fail();
    }
    json_decref(expected);
}

static const char *find_header(const struct llm_wire_request *w, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; w->headers[i]; i++)
        if (strncasecmp(w->headers[i], name, n) == 0 && w->headers[i][n] == ':')
            return w->headers[i] + n + 2;
    return NULL;
}

/* A schema with a $ref, an optional nullable field and titles/defaults, the
 * shape pydantic emits. */
static const char *const SCHEMA_TEXT =
    "{\"type\":\"object\",\"title\":\"Account\",\"additionalProperties\":false,"
    "\"properties\":{"
    " \"name\":{\"type\":\"string\",\"title\":\"Name\",\"description\":\"Company name\"},"
    " \"tier\":{\"$ref\":\"#/$defs/Tier\",\"description\":\"How big\"},"
    " \"tags\":{\"anyOf\":[{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3},"
    "                     {\"type\":\"null\"}],\"default\":null,\"title\":\"Tags\"}},"
    "\"required\":[\"name\",\"tier\"],"
    "\"$defs\":{\"Tier\":{\"type\":\"string\",\"enum\":[\"Low\",\"High\"],\"title\":\"Tier\"}}}";

static struct llm_provider_config provider_cfg(const char *name, const char *key, const char *base,
                                                const char *model) {
    struct llm_provider_config c;
    memset(&c, 0, sizeof(c));
    snprintf(c.name, sizeof(c.name), "%s", name);
    snprintf(c.api_key, sizeof(c.api_key), "%s", key);
    snprintf(c.base_url, sizeof(c.base_url), "%s", base);
    snprintf(c.model, sizeof(c.model), "%s", model);
    return c;
}

static struct llm_prompt basic_prompt(json_t *schema) {
    return (struct llm_prompt){
        .system = "You are precise.",
        .user = "Describe Acme.",
        .schema_doc = schema,
        .schema_name = "account",
        .temperature = 0.2,
        .max_tokens = 512,
    };
}

static json_t *built_body(const struct llm_wire_request *w) {
    json_error_t e;
    json_t *body = json_loadb(w->body, w->body_len, 0, &e);
    assert_non_null(body);
    return body;
}

/* A struct gtm_http_result with a header table. */
struct fake_result {
    struct gtm_http_result res;
    const char *headers[8]; /* name, value pairs */
};

static const char *fake_header(const struct gtm_http_result *res, const char *name) {
    const struct fake_result *f = (const struct fake_result *)res;
    for (size_t i = 0; f->headers[i]; i += 2)
        if (strcasecmp(f->headers[i], name) == 0)
            return f->headers[i + 1];
    return NULL;
}

static struct fake_result http_answer(long status, const char *body) {
    struct fake_result f;
    memset(&f, 0, sizeof(f));
    f.res.size = sizeof(f.res);
    f.res.status = status;
    f.res.body = body;
    f.res.body_len = strlen(body);
    f.res.header = fake_header;
    return f;
}

static struct fake_result transport_error(int error, const char *text) {
    struct fake_result f = http_answer(0, "");
    f.res.error = error;
    f.res.error_text = text;
    return f;
}

static void parse_with(const struct llm_provider_ops *ops, const struct fake_result *f,
                       struct llm_answer *a) {
    llm_answer_init(a);
    ops->parse(&f->res, a);
}

/* ---- OpenAI: requests ---------------------------------------------------- */

static void openai_strict_request(void **state) {
    (void)state;
    json_t *schema = must_parse(SCHEMA_TEXT);
    json_t *strict = must_parse("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},"
                                "\"required\":[\"name\"],\"additionalProperties\":false}");
    struct llm_provider_config cfg = provider_cfg("openai", "sk-test", "https://api.openai.com/v1/", "gpt-4.1-nano");
    struct llm_prompt p = basic_prompt(schema);
    p.openai_strict = strict;
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_openai_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    assert_string_equal(w.url, "https://api.openai.com/v1/chat/completions");
    assert_string_equal(find_header(&w, "Authorization"), "Bearer sk-test");
    assert_string_equal(find_header(&w, "Content-Type"), "application/json");
    json_t *body = built_body(&w);
    assert_json_eq(body,
        "{\"model\":\"gpt-4.1-nano\","
        " \"messages\":[{\"role\":\"system\",\"content\":\"You are precise.\"},"
        "              {\"role\":\"user\",\"content\":\"Describe Acme.\"}],"
        " \"temperature\":0.2,\"max_completion_tokens\":512,"
        " \"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"account\","
        "   \"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},"
        "   \"required\":[\"name\"],\"additionalProperties\":false}}}}");
    /* 0.2 goes out as 0.2, not 0.20000000000000001 */
    assert_non_null(strstr(w.body, "\"temperature\":0.2,"));
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(strict);
    json_decref(schema);
}

static void openai_compatible_json_object_request(void **state) {
    (void)state;
    json_t *schema = must_parse(SCHEMA_TEXT);
    struct llm_provider_config cfg = provider_cfg("openai", "", "http://127.0.0.1:11434/v1", "llama3");
    struct llm_prompt p = basic_prompt(schema);
    p.system = "";
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_openai_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    assert_null(find_header(&w, "Authorization")); /* no key: no header */
    json_t *body = built_body(&w);
    assert_json_eq(body,
        "{\"model\":\"llama3\","
        " \"messages\":[{\"role\":\"user\",\"content\":\"Describe Acme.\\n\\nRespond with a single JSON object.\"}],"
        " \"temperature\":0.2,\"max_tokens\":512,\"response_format\":{\"type\":\"json_object\"}}");
    json_decref(body);
    llm_wire_request_free(&w);

    /* A prompt that already says JSON is left alone. */
    p.user = "Describe Acme as json.";
    assert_int_equal(llm_openai_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    body = built_body(&w);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(body, "messages"), 0), "content")),
                        "Describe Acme as json.");
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(schema);
}

static void openai_repair_request(void **state) {
    (void)state;
    json_t *schema = must_parse(SCHEMA_TEXT);
    json_t *previous = must_parse("{\"role\":\"assistant\",\"content\":\"{\\\"name\\\":1}\"}");
    struct llm_provider_config cfg = provider_cfg("openai", "k", "https://api.openai.com/v1", "m");
    struct llm_prompt p = basic_prompt(schema);
    p.previous_turn = previous;
    p.repair_text = "Fix: /name: 1 is not of type 'string'";
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_openai_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    json_t *body = built_body(&w);
    assert_json_eq(json_object_get(body, "messages"),
        "[{\"role\":\"system\",\"content\":\"You are precise.\"},"
        " {\"role\":\"user\",\"content\":\"Describe Acme.\\n\\nRespond with a single JSON object.\"},"
        " {\"role\":\"assistant\",\"content\":\"{\\\"name\\\":1}\"},"
        " {\"role\":\"user\",\"content\":\"Fix: /name: 1 is not of type 'string'\"}]");
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(previous);
    json_decref(schema);
}

/* ---- OpenAI: answers ----------------------------------------------------- */

static const char *openai_body(const char *content_json, const char *finish, const char *extra) {
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
             "\"message\":{\"role\":\"assistant\",\"content\":%s,\"refusal\":null},"
             "\"finish_reason\":\"%s\"}]%s}",
             content_json, finish, extra);
    return buf;
}

#define USAGE ",\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":6,\"total_tokens\":25}"

static void openai_parse_success(void **state) {
    (void)state;
    struct fake_result f = http_answer(200, openai_body("\"{\\\"name\\\":\\\"Acme\\\"}\"", "stop", USAGE));
    struct llm_answer a;
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_OK);
    assert_json_eq(a.output, "{\"name\":\"Acme\"}");
    assert_int_equal(a.prompt_tokens, 19);
    assert_int_equal(a.completion_tokens, 6);
    assert_json_eq(a.assistant_turn, "{\"role\":\"assistant\",\"content\":\"{\\\"name\\\":\\\"Acme\\\"}\"}");
    llm_answer_clear(&a);

    /* Missing usage (compatible servers): zero tokens, still an answer. */
    f = http_answer(200, openai_body("\"{\\\"a\\\":1}\"", "stop", ""));
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_OK);
    assert_int_equal(a.prompt_tokens, 0);
    assert_int_equal(a.completion_tokens, 0);
    llm_answer_clear(&a);

    /* A fenced block with prose around it. */
    f = http_answer(200, openai_body("\"Sure!\\n```json\\n{\\\"a\\\": [1, 2]}\\n```\\nDone.\"", "stop", USAGE));
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_OK);
    assert_json_eq(a.output, "{\"a\":[1,2]}");
    llm_answer_clear(&a);
}

static void openai_parse_invalid_outputs(void **state) {
    (void)state;
    struct llm_answer a;
    /* JSON cut off in the content */
    struct fake_result f = http_answer(200, openai_body("\"{\\\"name\\\": \\\"Ac\"", "stop", USAGE));
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    assert_non_null(strstr(a.detail, "not complete JSON"));
    assert_non_null(a.assistant_turn);
    llm_answer_clear(&a);

    /* finish_reason length, even when the part received happens to parse */
    f = http_answer(200, openai_body("\"{\\\"name\\\":\\\"Acme\\\"}\"", "length", USAGE));
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    assert_null(a.output);
    assert_non_null(strstr(a.detail, "cut off"));
    llm_answer_clear(&a);

    /* prose only */
    f = http_answer(200, openai_body("\"I cannot produce that.\"", "stop", USAGE));
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    llm_answer_clear(&a);

    /* null content */
    f = http_answer(200, openai_body("null", "stop", USAGE));
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    assert_null(a.assistant_turn);
    llm_answer_clear(&a);
}

static void openai_parse_refusal(void **state) {
    (void)state;
    struct fake_result f = http_answer(200,
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"refusal\":\"I'm sorry, I can't help with that.\"},\"finish_reason\":\"stop\"}]" USAGE "}");
    struct llm_answer a;
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    assert_string_equal(a.detail, "refused to answer");
    assert_int_equal(a.prompt_tokens, 19);
    llm_answer_clear(&a);
}

static void openai_parse_errors(void **state) {
    (void)state;
    struct llm_answer a;
    struct fake_result f;

    f = http_answer(429, "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\","
                         "\"param\":null,\"code\":\"rate_limit_exceeded\"}}");
    f.headers[0] = "Retry-After";
    f.headers[1] = "2";
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    assert_true(a.retry_after_s == 2.0);
    assert_string_equal(a.detail, "HTTP 429 rate_limit_exceeded");
    llm_answer_clear(&a);

    /* retry-after-ms wins over retry-after */
    f.headers[2] = "retry-after-ms";
    f.headers[3] = "644";
    parse_with(&llm_openai_ops, &f, &a);
    assert_true(a.retry_after_s > 0.643 && a.retry_after_s < 0.645);
    llm_answer_clear(&a);

    f = http_answer(429, "{\"error\":{\"message\":\"You exceeded your current quota\","
                         "\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    assert_string_equal(a.detail, "HTTP 429 insufficient_quota");
    llm_answer_clear(&a);

    f = http_answer(429, "{\"error\":{\"message\":\"x\",\"type\":\"requests\",\"code\":\"credit_balance_exhausted\"}}");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);

    f = http_answer(401, "{\"error\":{\"message\":\"Incorrect API key provided: sk-****abcd.\","
                         "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    assert_string_equal(a.detail, "HTTP 401 invalid_api_key"); /* the server's message is not repeated */
    llm_answer_clear(&a);

    static const long fatal[] = {400, 403, 404};
    for (size_t i = 0; i < 3; i++) {
        f = http_answer(fatal[i], "{\"error\":{\"message\":\"m\",\"type\":\"invalid_request_error\"}}");
        parse_with(&llm_openai_ops, &f, &a);
        assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
        llm_answer_clear(&a);
    }
    static const long retry[] = {408, 409, 500, 503};
    for (size_t i = 0; i < 4; i++) {
        f = http_answer(retry[i], "{\"error\":{\"message\":\"m\",\"type\":\"server_error\"}}");
        parse_with(&llm_openai_ops, &f, &a);
        assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
        assert_true(a.retry_after_s < 0);
        llm_answer_clear(&a);
    }

    /* x-should-retry overrides the status */
    f = http_answer(500, "{\"error\":{\"type\":\"server_error\"}}");
    f.headers[0] = "x-should-retry";
    f.headers[1] = "false";
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);

    /* older vLLM's flat error body */
    f = http_answer(400, "{\"object\":\"error\",\"message\":\"bad\",\"code\":400}");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    assert_string_equal(a.detail, "HTTP 400");
    llm_answer_clear(&a);
}

static void openai_parse_gateway_and_transport(void **state) {
    (void)state;
    struct llm_answer a;
    struct fake_result f = http_answer(502, "<html><head><title>502 Bad Gateway</title></head></html>");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    assert_string_equal(a.detail, "HTTP 502");
    llm_answer_clear(&a);

    /* a 200 whose body was cut short */
    f = http_answer(200, "{\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"mess");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    llm_answer_clear(&a);

    f = transport_error(GTM_ETIMEDOUT, "Operation timed out");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    assert_true(a.timed_out);
    llm_answer_clear(&a);

    f = transport_error(GTM_EIO, "Connection reset by peer");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    assert_false(a.timed_out);
    assert_string_equal(a.detail, "Connection reset by peer");
    llm_answer_clear(&a);

    f = transport_error(GTM_ECONNREFUSED, "Connection refused");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    llm_answer_clear(&a);

    f = transport_error(GTM_ETOOBIG, "response body larger than 8 bytes");
    parse_with(&llm_openai_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);
}

/* ---- Anthropic ----------------------------------------------------------- */

static void anthropic_request(void **state) {
    (void)state;
    json_t *schema = must_parse(SCHEMA_TEXT);
    struct llm_provider_config cfg = provider_cfg("anthropic", "sk-ant", "https://api.anthropic.com", "claude-sonnet-4-5");
    struct llm_prompt p = basic_prompt(schema);
    p.temperature = 1.5; /* Anthropic stops at 1 */
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_anthropic_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    assert_string_equal(w.url, "https://api.anthropic.com/v1/messages");
    assert_string_equal(find_header(&w, "x-api-key"), "sk-ant");
    assert_string_equal(find_header(&w, "anthropic-version"), "2023-06-01");
    assert_null(find_header(&w, "Authorization"));
    json_t *body = built_body(&w);
    assert_json_eq(body,
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":512,\"temperature\":1.0,"
        " \"system\":\"You are precise.\","
        " \"messages\":[{\"role\":\"user\",\"content\":\"Describe Acme.\"}],"
        " \"tools\":[{\"name\":\"emit_account\",\"description\":\"Record the answer. Its input is the whole answer.\","
        "   \"input_schema\":{\"type\":\"object\",\"title\":\"Account\",\"additionalProperties\":false,"
        "     \"properties\":{"
        "       \"name\":{\"type\":\"string\",\"title\":\"Name\",\"description\":\"Company name\"},"
        "       \"tier\":{\"type\":\"string\",\"enum\":[\"Low\",\"High\"],\"title\":\"Tier\",\"description\":\"How big\"},"
        "       \"tags\":{\"anyOf\":[{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3},{\"type\":\"null\"}],"
        "                 \"default\":null,\"title\":\"Tags\"}},"
        "     \"required\":[\"name\",\"tier\"]}}],"
        " \"tool_choice\":{\"type\":\"tool\",\"name\":\"emit_account\"}}");
    json_decref(body);
    llm_wire_request_free(&w);

    /* Tool input is an object: a schema for anything else cannot be forced. */
    json_t *array_schema = must_parse("{\"type\":\"array\",\"items\":{\"type\":\"string\"}}");
    p.schema_doc = array_schema;
    assert_int_equal(llm_anthropic_ops.build(&cfg, &p, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "object"));
    json_decref(array_schema);
    json_decref(schema);
}

static void anthropic_repair_request(void **state) {
    (void)state;
    json_t *schema = must_parse(SCHEMA_TEXT);
    json_t *previous = must_parse("{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
                                  "\"id\":\"toolu_9\",\"name\":\"emit_account\",\"input\":{\"name\":1}}]}");
    struct llm_provider_config cfg = provider_cfg("anthropic", "", "http://127.0.0.1:9/", "c");
    struct llm_prompt p = basic_prompt(schema);
    p.system = NULL;
    p.previous_turn = previous;
    p.repair_text = "fix /name";
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_anthropic_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    assert_string_equal(w.url, "http://127.0.0.1:9/v1/messages");
    assert_null(find_header(&w, "x-api-key"));
    json_t *body = built_body(&w);
    assert_null(json_object_get(body, "system"));
    assert_json_eq(json_object_get(body, "messages"),
        "[{\"role\":\"user\",\"content\":\"Describe Acme.\"},"
        " {\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"emit_account\",\"input\":{\"name\":1}}]},"
        " {\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_9\",\"is_error\":true,\"content\":\"fix /name\"}]}]");
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(previous);
    json_decref(schema);
}

static void anthropic_parse(void **state) {
    (void)state;
    struct llm_answer a;
    struct fake_result f = http_answer(200,
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":["
        "{\"type\":\"text\",\"text\":\"Here it is.\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"emit_account\",\"input\":{\"name\":\"Acme\"}}],"
        "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":412,\"output_tokens\":38,"
        "\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":3}}");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_OK);
    assert_json_eq(a.output, "{\"name\":\"Acme\"}");
    assert_int_equal(a.prompt_tokens, 420);
    assert_int_equal(a.completion_tokens, 38);
    assert_json_eq(a.assistant_turn, "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
                                     "\"id\":\"toolu_1\",\"name\":\"emit_account\",\"input\":{\"name\":\"Acme\"}}]}");
    llm_answer_clear(&a);

    /* no tool, JSON in text, no usage */
    f = http_answer(200, "{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"name\\\":\\\"A\\\"}\"}],\"stop_reason\":\"end_turn\"}");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_OK);
    assert_int_equal(a.prompt_tokens, 0);
    llm_answer_clear(&a);

    f = http_answer(200, "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"e\",\"input\":{}}],"
                         "\"stop_reason\":\"max_tokens\",\"usage\":{\"input_tokens\":1,\"output_tokens\":512}}");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    assert_non_null(strstr(a.detail, "cut off"));
    llm_answer_clear(&a);

    f = http_answer(200, "{\"content\":[{\"type\":\"text\",\"text\":\"No.\"}],\"stop_reason\":\"refusal\"}");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);

    f = http_answer(200, "{\"content\":[],\"stop_reason\":\"end_turn\"}");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    llm_answer_clear(&a);
}

static void anthropic_parse_errors(void **state) {
    (void)state;
    struct llm_answer a;
    struct {
        long status;
        const char *type;
        enum llm_outcome outcome;
    } cases[] = {
        {529, "overloaded_error", LLM_ANSWER_RETRY},
        {500, "api_error", LLM_ANSWER_RETRY},
        {429, "rate_limit_error", LLM_ANSWER_RETRY},
        {401, "authentication_error", LLM_ANSWER_FATAL},
        {403, "permission_error", LLM_ANSWER_FATAL},
        {402, "billing_error", LLM_ANSWER_FATAL},
        {404, "not_found_error", LLM_ANSWER_FATAL},
        {400, "invalid_request_error", LLM_ANSWER_FATAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"m\"},"
                                     "\"request_id\":\"req_1\"}", cases[i].type);
        struct fake_result f = http_answer(cases[i].status, body);
        parse_with(&llm_anthropic_ops, &f, &a);
        assert_int_equal(a.outcome, cases[i].outcome);
        char want[64];
        snprintf(want, sizeof(want), "HTTP %ld %s", cases[i].status, cases[i].type);
        assert_string_equal(a.detail, want);
        llm_answer_clear(&a);
    }
    struct fake_result f = http_answer(429, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
        "\"message\":\"m\",\"details\":{\"error_code\":\"enforced_spend_limit_reached\"}}}");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);

    f = http_answer(429, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"m\"}}");
    f.headers[0] = "retry-after";
    f.headers[1] = "7";
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    assert_true(a.retry_after_s == 7.0);
    llm_answer_clear(&a);

    f = http_answer(502, "<html>bad gateway</html>");
    parse_with(&llm_anthropic_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    llm_answer_clear(&a);
}

/* ---- Gemini -------------------------------------------------------------- */

static void gemini_request(void **state) {
    (void)state;
    json_t *schema = must_parse(SCHEMA_TEXT);
    struct llm_provider_config cfg = provider_cfg("gemini", "AIza-test", "https://generativelanguage.googleapis.com",
                                                  "gemini-2.5-flash");
    struct llm_prompt p = basic_prompt(schema);
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_gemini_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    assert_string_equal(w.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
    assert_string_equal(find_header(&w, "x-goog-api-key"), "AIza-test");
    assert_null(strstr(w.url, "key=")); /* the key stays out of URLs */
    json_t *body = built_body(&w);
    assert_json_eq(body,
        "{\"systemInstruction\":{\"parts\":[{\"text\":\"You are precise.\"}]},"
        " \"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Describe Acme.\"}]}],"
        " \"generationConfig\":{\"temperature\":0.2,\"maxOutputTokens\":512,"
        "   \"responseMimeType\":\"application/json\","
        "   \"responseSchema\":{\"type\":\"OBJECT\","
        "     \"properties\":{"
        "       \"name\":{\"type\":\"STRING\",\"description\":\"Company name\"},"
        "       \"tier\":{\"type\":\"STRING\",\"description\":\"How big\",\"enum\":[\"Low\",\"High\"]},"
        "       \"tags\":{\"type\":\"ARRAY\",\"items\":{\"type\":\"STRING\"},\"maxItems\":3,\"nullable\":true}},"
        "     \"propertyOrdering\":[\"name\",\"tier\",\"tags\"],"
        "     \"required\":[\"name\",\"tier\"]}}}");
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(schema);
}

static void gemini_request_fallbacks_and_repair(void **state) {
    (void)state;
    /* An open map has no responseSchema form: plain JSON Schema goes instead. */
    json_t *schema = must_parse("{\"type\":\"object\",\"properties\":{\"m\":{\"type\":\"object\","
                                "\"additionalProperties\":{\"type\":\"string\"}}},\"$schema\":\"x\"}");
    json_t *previous = must_parse("{\"role\":\"model\",\"parts\":[{\"text\":\"{oops\"}]}");
    struct llm_provider_config cfg = provider_cfg("gemini", "k", "http://127.0.0.1:1", "g");
    struct llm_prompt p = basic_prompt(schema);
    p.system = "";
    p.previous_turn = previous;
    p.repair_text = "not JSON";
    struct llm_wire_request w;
    char err[200];
    assert_int_equal(llm_gemini_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    json_t *body = built_body(&w);
    assert_null(json_object_get(body, "systemInstruction"));
    json_t *gc = json_object_get(body, "generationConfig");
    assert_null(json_object_get(gc, "responseSchema"));
    assert_json_eq(json_object_get(gc, "responseJsonSchema"),
                   "{\"type\":\"object\",\"properties\":{\"m\":{\"type\":\"object\","
                   "\"additionalProperties\":{\"type\":\"string\"}}}}");
    assert_json_eq(json_object_get(body, "contents"),
        "[{\"role\":\"user\",\"parts\":[{\"text\":\"Describe Acme.\"}]},"
        " {\"role\":\"model\",\"parts\":[{\"text\":\"{oops\"}]},"
        " {\"role\":\"user\",\"parts\":[{\"text\":\"not JSON\"}]}]");
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(previous);
    json_decref(schema);

    /* type lists and multi-way anyOf */
    schema = must_parse("{\"type\":\"object\",\"properties\":{"
                        "\"a\":{\"type\":[\"integer\",\"null\"]},"
                        "\"b\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"},{\"type\":\"null\"}]}}}");
    p = basic_prompt(schema);
    assert_int_equal(llm_gemini_ops.build(&cfg, &p, &w, err, sizeof(err)), 0);
    body = built_body(&w);
    assert_json_eq(json_object_get(json_object_get(body, "generationConfig"), "responseSchema"),
        "{\"type\":\"OBJECT\",\"properties\":{"
        " \"a\":{\"type\":\"INTEGER\",\"nullable\":true},"
        " \"b\":{\"anyOf\":[{\"type\":\"STRING\"},{\"type\":\"INTEGER\"}],\"nullable\":true}},"
        " \"propertyOrdering\":[\"a\",\"b\"]}");
    json_decref(body);
    llm_wire_request_free(&w);
    json_decref(schema);

    /* a recursive schema cannot be inlined */
    schema = must_parse("{\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"#/$defs/N\"}},"
                        "\"$defs\":{\"N\":{\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"#/$defs/N\"}}}}}");
    p = basic_prompt(schema);
    assert_int_equal(llm_gemini_ops.build(&cfg, &p, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "recursive"));
    json_decref(schema);
}

static void gemini_parse(void **state) {
    (void)state;
    struct llm_answer a;
    struct fake_result f = http_answer(200,
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":["
        "{\"text\":\"thinking...\",\"thought\":true},{\"text\":\"{\\\"fruit\\\":\"},{\"text\":\"\\\"apple\\\"}\"}]},"
        "\"finishReason\":\"STOP\",\"index\":0}],"
        "\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":7,\"thoughtsTokenCount\":3}}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_OK);
    assert_json_eq(a.output, "{\"fruit\":\"apple\"}");
    assert_int_equal(a.prompt_tokens, 12);
    assert_int_equal(a.completion_tokens, 10);
    assert_json_eq(a.assistant_turn, "{\"role\":\"model\",\"parts\":[{\"text\":\"{\\\"fruit\\\":\\\"apple\\\"}\"}]}");
    llm_answer_clear(&a);

    f = http_answer(200, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"{\\\"a\\\":\"}]},\"finishReason\":\"MAX_TOKENS\"}]}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    assert_int_equal(a.prompt_tokens, 0);
    llm_answer_clear(&a);

    f = http_answer(200, "{\"candidates\":[{\"finishReason\":\"SAFETY\"}]}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);

    f = http_answer(200, "{\"promptFeedback\":{\"blockReason\":\"OTHER\"}}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    assert_string_equal(a.detail, "prompt blocked: OTHER");
    llm_answer_clear(&a);

    f = http_answer(200, "{\"candidates\":[{\"finishReason\":\"STOP\"}]}"); /* no content at all */
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_INVALID);
    llm_answer_clear(&a);
}

static void gemini_parse_errors(void **state) {
    (void)state;
    struct llm_answer a;
    struct fake_result f = http_answer(429,
        "{\"error\":{\"code\":429,\"message\":\"quota\",\"status\":\"RESOURCE_EXHAUSTED\",\"details\":["
        "{\"@type\":\"type.googleapis.com/google.rpc.QuotaFailure\",\"violations\":[]},"
        "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"37s\"}]}}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    assert_true(a.retry_after_s == 37.0);
    assert_string_equal(a.detail, "HTTP 429 RESOURCE_EXHAUSTED");
    llm_answer_clear(&a);

    f = http_answer(400, "{\"error\":{\"code\":400,\"message\":\"API key not valid.\",\"status\":\"INVALID_ARGUMENT\","
                         "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\"}]}}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    assert_string_equal(a.detail, "HTTP 400 INVALID_ARGUMENT API_KEY_INVALID");
    llm_answer_clear(&a);

    f = http_answer(403, "{\"error\":{\"code\":403,\"message\":\"no\",\"status\":\"PERMISSION_DENIED\"}}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_FATAL);
    llm_answer_clear(&a);

    f = http_answer(503, "{\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    llm_answer_clear(&a);

    f = http_answer(502, "<html><body>502</body></html>");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    llm_answer_clear(&a);

    f = http_answer(200, "<html>proxy</html>");
    parse_with(&llm_gemini_ops, &f, &a);
    assert_int_equal(a.outcome, LLM_ANSWER_RETRY);
    llm_answer_clear(&a);
}

/* ---- shared helpers -------------------------------------------------------- */

static void extract_json_cases(void **state) {
    (void)state;
    char err[160];
    json_t *v = llm_extract_json("  {\"a\":1}  ", err, sizeof(err));
    assert_json_eq(v, "{\"a\":1}");
    json_decref(v);
    v = llm_extract_json("Here you go: {\"a\":\"}{\"} hope it helps", err, sizeof(err));
    assert_json_eq(v, "{\"a\":\"}{\"}");
    json_decref(v);
    v = llm_extract_json("```\n{\"b\":[true]}\n```", err, sizeof(err));
    assert_json_eq(v, "{\"b\":[true]}");
    json_decref(v);
    v = llm_extract_json("[1,2]", err, sizeof(err)); /* whole-text JSON of any kind */
    assert_json_eq(v, "[1,2]");
    json_decref(v);
    assert_null(llm_extract_json("{\"a\": [1, 2", err, sizeof(err)));
    assert_non_null(strstr(err, "not complete JSON"));
    assert_null(llm_extract_json("nothing here", err, sizeof(err)));
    assert_non_null(strstr(err, "not valid JSON"));
    assert_null(llm_extract_json("", err, sizeof(err)));
    assert_null(llm_extract_json(NULL, err, sizeof(err)));
}

static void retry_after_values(void **state) {
    (void)state;
    assert_true(llm_parse_retry_after("5", 0) == 5.0);
    assert_true(llm_parse_retry_after(" 1.5 ", 0) == 1.5);
    assert_true(llm_parse_retry_after("-1", 0) < 0);
    assert_true(llm_parse_retry_after("soon", 0) < 0);
    assert_true(llm_parse_retry_after(NULL, 0) < 0);
    /* HTTP-date: 784111777 is Sun, 06 Nov 1994 08:49:37 GMT */
    assert_true(llm_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0 - 30) == 30.0);
    assert_true(llm_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0 + 30) == 0.0);
    assert_true(llm_parse_duration("37s") == 37.0);
    assert_true(llm_parse_duration("1.5s") == 1.5);
    assert_true(llm_parse_duration("644ms") > 0.643);
    assert_true(llm_parse_duration("3m") < 0);
}

static void inline_refs_keeps_data(void **state) {
    (void)state;
    char err[160];
    /* a property named like a keyword, and a default that looks like a $ref */
    json_t *doc = must_parse("{\"type\":\"object\",\"properties\":{\"enum\":{\"$ref\":\"#/$defs/E\"},"
                             "\"d\":{\"type\":\"object\",\"default\":{\"$ref\":\"not a ref\"}}},"
                             "\"$defs\":{\"E\":{\"type\":\"string\",\"enum\":[\"x\"]}}}");
    json_t *out = llm_schema_inline_refs(doc, err, sizeof(err));
    assert_json_eq(out, "{\"type\":\"object\",\"properties\":{\"enum\":{\"type\":\"string\",\"enum\":[\"x\"]},"
                        "\"d\":{\"type\":\"object\",\"default\":{\"$ref\":\"not a ref\"}}}}");
    json_decref(out);
    json_decref(doc);
    doc = must_parse("{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/Missing\"}}}");
    assert_null(llm_schema_inline_refs(doc, err, sizeof(err)));
    assert_non_null(strstr(err, "#/$defs/Missing"));
    json_decref(doc);
}

/* ---- breaker --------------------------------------------------------------- */

static void breaker_states(void **state) {
    (void)state;
    struct llm_breaker b;
    breaker_init(&b, 3, 10);
    uint64_t t = 1000000;
    assert_true(breaker_allow(&b, t));
    breaker_failure(&b, t);
    breaker_failure(&b, t);
    assert_true(breaker_allow(&b, t));
    breaker_success(&b); /* success resets the count */
    assert_int_equal(b.consecutive_failures, 0);
    breaker_failure(&b, t);
    breaker_failure(&b, t);
    breaker_failure(&b, t + 5);
    assert_int_equal(breaker_state_at(&b, t + 5), LLM_OPEN);
    assert_false(breaker_allow(&b, t + 5));
    assert_int_equal(breaker_ms_until_half_open(&b, t + 5), 10000);
    assert_false(breaker_allow(&b, t + 10004)); /* 10 s after the LAST failure */
    assert_int_equal(breaker_state_at(&b, t + 10005), LLM_HALF_OPEN);
    assert_true(breaker_allow(&b, t + 10005));
    assert_true(breaker_allow(&b, t + 10006)); /* HALF_OPEN lets every call through */
    breaker_failure(&b, t + 10007);           /* a failed trial reopens */
    assert_int_equal(b.state, LLM_OPEN);
    assert_false(breaker_allow(&b, t + 10008));
    assert_true(breaker_allow(&b, t + 20007));
    breaker_success(&b);
    assert_int_equal(b.state, LLM_CLOSED);
    assert_int_equal(breaker_ms_until_half_open(&b, t + 20008), 0);
}

/* ---- configuration --------------------------------------------------------- */

static const char *const LLM_VARS[] = {
    "LLM_PROVIDERS", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "GEMINI_API_KEY", "GEMINI_BASE_URL", "GEMINI_MODEL",
    "LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT", NULL};

static int clear_env(void **state) {
    (void)state;
    for (size_t i = 0; LLM_VARS[i]; i++)
        unsetenv(LLM_VARS[i]);
    return 0;
}

static void config_defaults(void **state) {
    (void)state;
    struct llm_config cfg;
    char err[200];
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.n_providers, 0);
    assert_int_equal(cfg.breaker_threshold, 5);
    assert_int_equal(cfg.breaker_recovery_s, 300);
    assert_int_equal(cfg.attempts_per_provider, 2);

    setenv("GEMINI_API_KEY", "g-key", 1);
    setenv("ANTHROPIC_API_KEY", "a-key", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.n_providers, 2); /* default order, OpenAI not configured */
    assert_string_equal(cfg.providers[0].name, "anthropic");
    assert_string_equal(cfg.providers[0].base_url, "https://api.anthropic.com");
    assert_string_equal(cfg.providers[0].model, "claude-sonnet-4-5");
    assert_string_equal(cfg.providers[1].name, "gemini");
    assert_string_equal(cfg.providers[1].base_url, "https://generativelanguage.googleapis.com");
    assert_string_equal(cfg.providers[1].model, "gemini-2.5-flash");
    assert_string_equal(cfg.providers[1].api_key, "g-key");
}

static void config_order_and_overrides(void **state) {
    (void)state;
    struct llm_config cfg;
    char err[200];
    setenv("LLM_PROVIDERS", " Gemini , openai,gemini", 1);
    setenv("GEMINI_API_KEY", "g", 1);
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1", 1); /* a local server needs no key */
    setenv("OPENAI_MODEL", "llama3.1:8b", 1);
    setenv("ANTHROPIC_API_KEY", "a", 1); /* not listed: not used */
    setenv("LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2", 1);
    setenv("LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "1", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.n_providers, 2);
    assert_string_equal(cfg.providers[0].name, "gemini");
    assert_string_equal(cfg.providers[1].name, "openai");
    assert_string_equal(cfg.providers[1].api_key, "");
    assert_string_equal(cfg.providers[1].base_url, "http://127.0.0.1:11434/v1");
    assert_string_equal(cfg.providers[1].model, "llama3.1:8b");
    assert_int_equal(cfg.breaker_threshold, 2);
    assert_int_equal(cfg.breaker_recovery_s, 1);
    assert_int_equal(cfg.providers[0].api_key[0], 'g');
}

static void config_errors_name_the_variable(void **state) {
    (void)state;
    struct llm_config cfg;
    char err[200];
    setenv("LLM_PROVIDERS", "openai,mistral", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "LLM_PROVIDERS"));
    assert_non_null(strstr(err, "mistral"));
    unsetenv("LLM_PROVIDERS");

    setenv("LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD"));
    setenv("LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "five", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), -1);
    unsetenv("LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD");

    setenv("LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "-3", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT"));
    unsetenv("LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT");

    setenv("ANTHROPIC_API_KEY", "a", 1);
    setenv("ANTHROPIC_BASE_URL", "ftp://example.com", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "ANTHROPIC_BASE_URL"));
    unsetenv("ANTHROPIC_BASE_URL");

    setenv("GEMINI_API_KEY", "g", 1);
    setenv("GEMINI_MODEL", "../evil?x", 1);
    assert_int_equal(llm_config_from_env(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "GEMINI_MODEL"));
    assert_null(strstr(err, "g-key"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_strict_request),
        cmocka_unit_test(openai_compatible_json_object_request),
        cmocka_unit_test(openai_repair_request),
        cmocka_unit_test(openai_parse_success),
        cmocka_unit_test(openai_parse_invalid_outputs),
        cmocka_unit_test(openai_parse_refusal),
        cmocka_unit_test(openai_parse_errors),
        cmocka_unit_test(openai_parse_gateway_and_transport),
        cmocka_unit_test(anthropic_request),
        cmocka_unit_test(anthropic_repair_request),
        cmocka_unit_test(anthropic_parse),
        cmocka_unit_test(anthropic_parse_errors),
        cmocka_unit_test(gemini_request),
        cmocka_unit_test(gemini_request_fallbacks_and_repair),
        cmocka_unit_test(gemini_parse),
        cmocka_unit_test(gemini_parse_errors),
        cmocka_unit_test(extract_json_cases),
        cmocka_unit_test(retry_after_values),
        cmocka_unit_test(inline_refs_keeps_data),
        cmocka_unit_test(breaker_states),
        cmocka_unit_test_setup(config_defaults, clear_env),
        cmocka_unit_test_setup(config_order_and_overrides, clear_env),
        cmocka_unit_test_setup(config_errors_name_the_variable, clear_env),
    };
    return cmocka_run_group_tests_name("llm_providers", tests, NULL, NULL);
}
