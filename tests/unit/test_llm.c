/* The orchestrator against tests/fakes/fake_llm.py, started as a subprocess
 * on a free port (argv[1] is its path) and stopped by pid at the end.  The
 * fake is scripted and inspected through its control API with blocking curl
 * calls made while the loop is idle; generation runs on a uv loop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "fetch/httpc.h"
#include "llm/llm.h"
#include "schema/schema.h"

#define PYTHON "/usr/bin/python3"
#define WATCHDOG_MS 30000

static const char *fake_script_path;
static pid_t fake_pid = -1;
static int fake_stdin = -1; /* the fake exits when this closes, should we die first */
static int fake_port;

static const char *const KEYS[] = {"sk-openai-secret-key", "sk-ant-secret-key", "AIza-gemini-secret-key"};
static const char *const NAMES[] = {"openai", "anthropic", "gemini"};

/* ---- the fake server process ------------------------------------------------ */

static int start_fake(void) {
    int out[2], in[2];
    if (pipe(out) != 0 || pipe(in) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(PYTHON, PYTHON, fake_script_path, "--port", "0", "--stdin-eof", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fake_pid = pid;
    fake_stdin = in[1];
    FILE *f = fdopen(out[0], "r");
    char line[64] = "";
    if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "PORT %d", &fake_port) != 1) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static void stop_fake(void) {
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
        fake_pid = -1;
    }
    if (fake_stdin >= 0)
        close(fake_stdin);
    fake_stdin = -1;
}

/* ---- control API ------------------------------------------------------------- */

struct membuf {
    char *data;
    size_t len;
};

static size_t collect(char *ptr, size_t size, size_t n, void *userp) {
    struct membuf *b = userp;
    char *p = realloc(b->data, b->len + size * n + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, ptr, size * n);
    b->len += size * n;
    p[b->len] = '\0';
    b->data = p;
    return size * n;
}

/* A control call; the parsed answer (new reference). */
static json_t *control(const char *method, const char *path, const char *body) {
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/%s", fake_port, path);
    CURL *easy = curl_easy_init();
    assert_non_null(easy);
    struct membuf b = {NULL, 0};
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 20000L);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body ? body : "{}");
    CURLcode rc = curl_easy_perform(easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(easy);
    assert_int_equal(rc, CURLE_OK);
    assert_int_equal(status, 200);
    json_t *doc = json_loads(b.data ? b.data : "null", JSON_DECODE_ANY, NULL);
    free(b.data);
    assert_non_null(doc);
    return doc;
}

static void fake_script(const char *provider, const char *steps_json) {
    char body[4096];
    snprintf(body, sizeof(body), "{\"provider\":\"%s\",\"steps\":%s}", provider, steps_json);
    json_decref(control("POST", "script", body));
}

static void fake_default(const char *provider, const char *step_json) {
    char body[4096];
    snprintf(body, sizeof(body), "{\"provider\":\"%s\",\"step\":%s}", provider, step_json);
    json_decref(control("POST", "default", body));
}

/* The requests the fake recorded for provider (new reference). */
static json_t *fake_requests(const char *provider) {
    char path[64];
    snprintf(path, sizeof(path), "requests?provider=%s", provider);
    return control("GET", path, NULL);
}

static size_t fake_count(const char *provider) {
    json_t *r = fake_requests(provider);
    size_t n = json_array_size(r);
    json_decref(r);
    return n;
}

/* ---- the loop, httpc, llm ------------------------------------------------------ */

struct fixture {
    uv_loop_t loop;
    struct httpc *httpc;
    struct llm *llm;
    struct schema *schema;
    json_t *schema_doc;
    bool httpc_closed;
};

struct outcome {
    bool done;
    int calls;
    int status;
    json_t *output;
    char provider[16];
    char model[64];
    char message[1024];
    unsigned attempts, prompt_tokens, completion_tokens, retry_after_s;
    uint64_t finished_ns;
};

static const char *const SCHEMA =
    "{\"type\":\"object\",\"title\":\"Company\",\"additionalProperties\":false,"
    " \"properties\":{\"company\":{\"type\":\"string\"},\"score\":{\"type\":\"integer\"},"
    "  \"tags\":{\"anyOf\":[{\"type\":\"array\",\"items\":{\"type\":\"string\"}},{\"type\":\"null\"}],\"default\":null}},"
    " \"required\":[\"company\",\"score\"]}";
#define VALID "{\"answer\":{\"company\":\"Acme\",\"score\":3}}"
#define NORMALIZED "{\"company\":\"Acme\",\"score\":3,\"tags\":null}"
#define WRONG_TYPE "{\"answer\":{\"company\":5,\"score\":3}}"

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->httpc = httpc_new(&fx->loop);
    assert_non_null(fx->httpc);
    fx->schema_doc = json_loads(SCHEMA, 0, NULL);
    char err[200];
    fx->schema = schema_compile(fx->schema_doc, err, sizeof(err));
    assert_non_null(fx->schema);
    json_decref(control("POST", "reset", NULL));
    *state = fx;
    return 0;
}

static void on_httpc_closed(void *arg) { ((struct fixture *)arg)->httpc_closed = true; }

static int teardown(void **state) {
    struct fixture *fx = *state;
    if (fx->llm)
        llm_close(fx->llm);
    httpc_close(fx->httpc, on_httpc_closed, fx);
    while (!fx->httpc_closed)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0); /* every handle closed */
    schema_free(fx->schema);
    json_decref(fx->schema_doc);
    json_decref(control("POST", "release", NULL));
    free(fx);
    return 0;
}

/* An llm over the named providers (comma list), all pointed at the fake. */
static void make_llm(struct fixture *fx, const char *providers, unsigned attempts, unsigned threshold,
                     unsigned recovery_s) {
    struct llm_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.attempts_per_provider = attempts;
    cfg.breaker_threshold = threshold;
    cfg.breaker_recovery_s = recovery_s;
    /* in the order given */
    char list[64];
    snprintf(list, sizeof(list), "%s", providers);
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < 3 && strcmp(NAMES[i], name) != 0)
            i++;
        assert_true(i < 3);
        struct llm_provider_config *p = &cfg.providers[cfg.n_providers++];
        snprintf(p->name, sizeof(p->name), "%s", NAMES[i]);
        snprintf(p->api_key, sizeof(p->api_key), "%s", KEYS[i]);
        snprintf(p->base_url, sizeof(p->base_url), "http://127.0.0.1:%d%s", fake_port,
                 i == 0 ? "/v1" : "");
        snprintf(p->model, sizeof(p->model), "%s-test-model", NAMES[i]);
    }
    fx->llm = llm_new(&fx->loop, fx->httpc, &cfg);
    assert_non_null(fx->llm);
}

static void on_done(void *arg, const struct llm_result *res) {
    struct outcome *o = arg;
    o->calls++;
    o->done = true;
    o->finished_ns = uv_hrtime();
    o->status = res->status;
    o->output = res->output ? json_incref(res->output) : NULL;
    snprintf(o->provider, sizeof(o->provider), "%s", res->provider);
    snprintf(o->model, sizeof(o->model), "%s", res->model);
    snprintf(o->message, sizeof(o->message), "%s", res->message ? res->message : "");
    o->attempts = res->attempts;
    o->prompt_tokens = res->prompt_tokens;
    o->completion_tokens = res->completion_tokens;
    o->retry_after_s = res->retry_after_s;
}

static struct llm_request request(struct fixture *fx, unsigned deadline_ms) {
    return (struct llm_request){
        .task = "test",
        .system = "You extract company facts.",
        .user = "Acme makes anvils. Answer in JSON.",
        .schema = fx->schema,
        .schema_name = "company",
        .temperature = 0.2,
        .max_tokens = 256,
        .deadline_ms = deadline_ms,
        .request_id = "req-1",
    };
}

static void run_until(struct fixture *fx, const bool *flag) {
    uint64_t start = uv_hrtime();
    while (!*flag) {
        uv_run(&fx->loop, UV_RUN_ONCE);
        if ((uv_hrtime() - start) / 1000000 > WATCHDOG_MS)
            fail_msg("watchdog: nothing finished in %d ms", WATCHDOG_MS);
    }
}

/* Generates and waits for done; the outcome's output must be released. */
static struct outcome generate(struct fixture *fx, unsigned deadline_ms, double *elapsed_s) {
    struct outcome o;
    memset(&o, 0, sizeof(o));
    struct llm_request req = request(fx, deadline_ms);
    uint64_t start = uv_hrtime();
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, NULL), 0);
    assert_false(o.done); /* never from inside llm_generate */
    run_until(fx, &o.done);
    assert_int_equal(o.calls, 1);
    if (elapsed_s)
        *elapsed_s = (double)(o.finished_ns - start) / 1e9;
    return o;
}

static void assert_no_keys(const char *text) {
    for (size_t i = 0; i < 3; i++)
        assert_null(strstr(text, KEYS[i]));
}

static void on_stack_handle_closed(uv_handle_t *h) { *(bool *)h->data = true; }

/* A handle on the test's stack must be gone before the function returns. */
static void close_stack_handle(struct fixture *fx, uv_handle_t *h) {
    bool closed = false;
    h->data = &closed;
    uv_close(h, on_stack_handle_closed);
    run_until(fx, &closed);
}

static void on_wait_timer(uv_timer_t *t) { *(bool *)t->data = true; }

/* Waits on the loop (not a sleep: HTTP work goes on meanwhile). */
static void loop_wait_ms(struct fixture *fx, uint64_t ms) {
    bool fired = false;
    uv_timer_t t;
    uv_timer_init(&fx->loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_wait_timer, ms, 0);
    run_until(fx, &fired);
    close_stack_handle(fx, (uv_handle_t *)&t);
}

static json_t *request_body(json_t *requests, size_t i) {
    return json_object_get(json_array_get(requests, i), "body");
}

static const char *request_header(json_t *requests, size_t i, const char *name) {
    return json_string_value(json_object_get(json_object_get(json_array_get(requests, i), "headers"), name));
}

static double request_time(json_t *requests, size_t i) {
    return json_real_value(json_object_get(json_array_get(requests, i), "t"));
}

static void assert_output(json_t *output, const char *expected) {
    json_t *want = json_loads(expected, 0, NULL);
    assert_non_null(output);
    assert_true(json_equal(output, want));
    /* normalized: keys in the schema's order */
    char *text = json_dumps(output, JSON_COMPACT);
    char *want_text = json_dumps(want, JSON_COMPACT);
    assert_string_equal(text, want_text);
    free(text);
    free(want_text);
    json_decref(want);
}

/* ---- tests ------------------------------------------------------------------- */

static void happy_path_each_provider(void **state) {
    struct fixture *fx = *state;
    for (size_t i = 0; i < 3; i++) {
        json_decref(control("POST", "reset", NULL));
        if (fx->llm)
            llm_close(fx->llm);
        make_llm(fx, NAMES[i], 2, 5, 300);
        fake_default(NAMES[i], VALID);
        struct outcome o = generate(fx, 10000, NULL);
        assert_int_equal(o.status, LLM_OK);
        assert_string_equal(o.provider, NAMES[i]);
        assert_int_equal(o.attempts, 1);
        assert_true(o.prompt_tokens > 0 && o.completion_tokens > 0);
        assert_string_equal(o.message, "");
        assert_output(o.output, NORMALIZED);
        json_decref(o.output);

        json_t *reqs = fake_requests(NAMES[i]);
        assert_int_equal(json_array_size(reqs), 1);
        json_t *body = request_body(reqs, 0);
        if (i == 0) {
            char bearer[64];
            snprintf(bearer, sizeof(bearer), "Bearer %s", KEYS[0]);
            assert_string_equal(request_header(reqs, 0, "authorization"), bearer);
            json_t *rf = json_object_get(body, "response_format");
            assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
            assert_string_equal(json_string_value(json_object_get(json_object_get(rf, "json_schema"), "name")),
                                "company");
            assert_non_null(json_object_get(body, "max_tokens")); /* not api.openai.com */
        } else if (i == 1) {
            assert_string_equal(request_header(reqs, 0, "x-api-key"), KEYS[1]);
            assert_string_equal(request_header(reqs, 0, "anthropic-version"), "2023-06-01");
            assert_string_equal(json_string_value(json_object_get(json_object_get(body, "tool_choice"), "name")),
                                "emit_company");
        } else {
            assert_string_equal(request_header(reqs, 0, "x-goog-api-key"), KEYS[2]);
            assert_non_null(strstr(json_string_value(json_object_get(json_array_get(reqs, 0), "path")),
                                   "/v1beta/models/gemini-test-model:generateContent"));
            json_t *rs = json_object_get(json_object_get(body, "generationConfig"), "responseSchema");
            assert_string_equal(json_string_value(json_object_get(rs, "type")), "OBJECT");
        }
        json_decref(reqs);

        struct llm_provider_status st[3];
        assert_int_equal(llm_status(fx->llm, st, 3), 1);
        assert_int_equal(st[0].calls, 1);
        assert_int_equal(st[0].breaker, LLM_CLOSED);
        assert_true(st[0].prompt_tokens > 0);
    }
}

/* Strict mode lists optional properties as required-but-nullable; a null for
 * one whose own type has no null means "left out", not a repair. */
static void strict_mode_nulls_for_optional_properties(void **state) {
    struct fixture *fx = *state;
    json_t *doc = json_loads("{\"type\":\"object\",\"additionalProperties\":false,"
                             "\"properties\":{\"company\":{\"type\":\"string\"},"
                             "\"note\":{\"type\":\"string\",\"default\":\"none\"}},"
                             "\"required\":[\"company\"]}", 0, NULL);
    char err[200];
    struct schema *schema = schema_compile(doc, err, sizeof(err));
    assert_non_null(schema);
    make_llm(fx, "openai", 2, 5, 300);
    fake_default("openai", "{\"answer\":{\"company\":\"Acme\",\"note\":null}}");
    struct outcome o;
    memset(&o, 0, sizeof(o));
    struct llm_request req = request(fx, 10000);
    req.schema = schema;
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, NULL), 0);
    run_until(fx, &o.done);
    assert_int_equal(o.status, LLM_OK);
    assert_int_equal(o.attempts, 1); /* no repair turn */
    assert_output(o.output, "{\"company\":\"Acme\",\"note\":\"none\"}");
    json_decref(o.output);
    json_t *reqs = fake_requests("openai");
    json_t *strict = json_object_get(json_object_get(json_object_get(request_body(reqs, 0), "response_format"),
                                                     "json_schema"), "schema");
    assert_int_equal(json_array_size(json_object_get(strict, "required")), 2);
    json_decref(reqs);
    schema_free(schema);
    json_decref(doc);
}

static void failover_after_server_errors(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 2, 5, 300);
    fake_script("openai", "[{\"error\":\"server\"},{\"error\":\"server\"}]");
    fake_default("anthropic", VALID);
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    assert_string_equal(o.provider, "anthropic");
    assert_string_equal(o.model, "anthropic-test-model");
    assert_int_equal(o.attempts, 3);
    assert_string_equal(o.message, "openai: HTTP 500 server_error (2 attempts)");
    json_decref(o.output);
    json_t *reqs = fake_requests("openai");
    assert_int_equal(json_array_size(reqs), 2);
    double gap = request_time(reqs, 1) - request_time(reqs, 0);
    assert_true(gap >= 0.35 && gap < 3.0); /* backoff ~0.375-0.5 s */
    json_decref(reqs);
    assert_int_equal(fake_count("anthropic"), 1);

    struct llm_provider_status st[3];
    llm_status(fx->llm, st, 3);
    assert_int_equal(st[0].consecutive_failures, 1);
    assert_int_equal(st[0].failures, 1);
    assert_int_equal(st[1].consecutive_failures, 0);
}

static void repair_on_the_same_provider(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 2, 5, 300);
    fake_script("openai", "[" WRONG_TYPE ", " VALID "]");
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    assert_string_equal(o.provider, "openai");
    assert_int_equal(o.attempts, 2);
    assert_output(o.output, NORMALIZED);
    json_decref(o.output);
    assert_int_equal(fake_count("anthropic"), 0);

    json_t *reqs = fake_requests("openai");
    assert_int_equal(json_array_size(reqs), 2);
    json_t *messages = json_object_get(request_body(reqs, 1), "messages");
    assert_int_equal(json_array_size(messages), 4);
    json_t *assistant = json_array_get(messages, 2);
    assert_string_equal(json_string_value(json_object_get(assistant, "role")), "assistant");
    assert_non_null(strstr(json_string_value(json_object_get(assistant, "content")), "\"company\": 5"));
    const char *fix = json_string_value(json_object_get(json_array_get(messages, 3), "content"));
    assert_non_null(strstr(fix, "/company"));
    json_decref(reqs);
}

static void repair_shapes_for_anthropic_and_gemini(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "anthropic,gemini", 2, 5, 300);
    fake_script("anthropic", "[" WRONG_TYPE ", " VALID "]");
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    assert_string_equal(o.provider, "anthropic");
    json_decref(o.output);
    json_t *reqs = fake_requests("anthropic");
    json_t *messages = json_object_get(request_body(reqs, 1), "messages");
    assert_int_equal(json_array_size(messages), 3);
    json_t *tool_use = json_array_get(json_object_get(json_array_get(messages, 1), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(tool_use, "type")), "tool_use");
    json_t *result = json_array_get(json_object_get(json_array_get(messages, 2), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(result, "type")), "tool_result");
    assert_string_equal(json_string_value(json_object_get(result, "tool_use_id")),
                        json_string_value(json_object_get(tool_use, "id")));
    assert_true(json_is_true(json_object_get(result, "is_error")));
    assert_non_null(strstr(json_string_value(json_object_get(result, "content")), "/company"));
    json_decref(reqs);

    /* Gemini: not JSON at all, then valid. */
    json_decref(control("POST", "reset", NULL));
    llm_close(fx->llm);
    make_llm(fx, "gemini", 2, 5, 300);
    fake_script("gemini", "[{\"text\":\"Sure, here is the company: Acme\"}, " VALID "]");
    o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    json_decref(o.output);
    reqs = fake_requests("gemini");
    json_t *contents = json_object_get(request_body(reqs, 1), "contents");
    assert_int_equal(json_array_size(contents), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(contents, 1), "role")), "model");
    const char *fix = json_string_value(json_object_get(
        json_array_get(json_object_get(json_array_get(contents, 2), "parts"), 0), "text"));
    assert_non_null(strstr(fix, "not valid JSON"));
    json_decref(reqs);
}

static void repair_fails_then_failover(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,gemini", 2, 5, 300);
    fake_script("openai", "[" WRONG_TYPE ", {\"text\":\"{\\\"company\\\": \"}]");
    fake_default("gemini", VALID);
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    assert_string_equal(o.provider, "gemini");
    assert_int_equal(o.attempts, 3);
    json_decref(o.output);
    assert_int_equal(fake_count("openai"), 2);
    struct llm_provider_status st[3];
    llm_status(fx->llm, st, 3);
    assert_int_equal(st[0].consecutive_failures, 1); /* invalid after repair counts once */
}

static void all_invalid_is_einvalid(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 2, 5, 300);
    fake_default("openai", WRONG_TYPE);
    fake_default("anthropic", "{\"finish\":\"length\"}");
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_EINVALID);
    assert_null(o.output);
    assert_string_equal(o.provider, "");
    assert_int_equal(o.attempts, 4);
    assert_non_null(strstr(o.message, "openai: invalid output after a repair turn"));
    assert_non_null(strstr(o.message, "anthropic: invalid output after a repair turn"));
    assert_non_null(strstr(o.message, "cut off"));
    assert_null(strchr(o.message, '\n'));
    assert_no_keys(o.message);
}

static void retry_after_is_honoured(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai", 2, 5, 300);
    fake_script("openai", "[{\"error\":\"rate_limit\",\"retry_after\":1}]");
    fake_default("openai", VALID);
    double elapsed;
    struct outcome o = generate(fx, 10000, &elapsed);
    assert_int_equal(o.status, LLM_OK);
    assert_int_equal(o.attempts, 2);
    assert_string_equal(o.message, "openai: HTTP 429 rate_limit_exceeded"); /* what happened on the way */
    json_decref(o.output);
    json_t *reqs = fake_requests("openai");
    double gap = request_time(reqs, 1) - request_time(reqs, 0);
    assert_true(gap >= 0.95 && gap < 3.0);
    json_decref(reqs);

    /* retry-after-ms, finer than seconds, comes first */
    json_decref(control("POST", "reset", NULL));
    fake_script("openai", "[{\"error\":\"rate_limit\",\"retry_after\":5,\"retry_after_ms\":300}]");
    fake_default("openai", VALID);
    o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    json_decref(o.output);
    reqs = fake_requests("openai");
    gap = request_time(reqs, 1) - request_time(reqs, 0);
    assert_true(gap >= 0.28 && gap < 3.0);
    json_decref(reqs);

    /* Gemini's RetryInfo */
    json_decref(control("POST", "reset", NULL));
    llm_close(fx->llm);
    make_llm(fx, "gemini", 2, 5, 300);
    fake_script("gemini", "[{\"error\":\"rate_limit\",\"retry_after\":0.6}]");
    fake_default("gemini", VALID);
    o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    json_decref(o.output);
    reqs = fake_requests("gemini");
    gap = request_time(reqs, 1) - request_time(reqs, 0);
    assert_true(gap >= 0.58 && gap < 3.0);
    json_decref(reqs);
}

static void retry_after_past_the_deadline_fails_over(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 2, 5, 300);
    fake_script("openai", "[{\"error\":\"rate_limit\",\"retry_after\":30}]");
    fake_default("anthropic", VALID);
    double elapsed;
    struct outcome o = generate(fx, 5000, &elapsed);
    assert_int_equal(o.status, LLM_OK);
    assert_string_equal(o.provider, "anthropic");
    assert_true(elapsed < 2.0);
    json_decref(o.output);
    assert_int_equal(fake_count("openai"), 1);
}

static void unhealable_errors_are_not_retried(void **state) {
    struct fixture *fx = *state;
    static const char *const cases[][2] = {
        {"openai", "{\"error\":\"auth\"}"},
        {"openai", "{\"error\":\"quota\"}"},
        {"anthropic", "{\"error\":\"auth\"}"},
        {"anthropic", "{\"error\":\"quota\"}"},
        {"gemini", "{\"error\":\"auth\"}"},
        {"openai", "{\"error\":\"refusal\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_decref(control("POST", "reset", NULL));
        if (fx->llm)
            llm_close(fx->llm);
        const char *first = cases[i][0];
        const char *second = strcmp(first, "gemini") == 0 ? "openai" : "gemini";
        char order[32];
        snprintf(order, sizeof(order), "%s,%s", first, second);
        make_llm(fx, order, 3, 5, 300);
        fake_default(first, cases[i][1]);
        fake_default(second, VALID);
        struct outcome o = generate(fx, 10000, NULL);
        assert_int_equal(o.status, LLM_OK);
        assert_string_equal(o.provider, second);
        json_decref(o.output);
        assert_int_equal(fake_count(first), 1); /* exactly one request */
    }
}

static void all_failed_is_efailed_without_keys(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic,gemini", 2, 5, 300);
    fake_default("openai", "{\"error\":\"auth\"}");
    fake_default("anthropic", "{\"error\":\"auth\"}");
    fake_default("gemini", "{\"error\":\"html\"}");
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_EFAILED);
    assert_non_null(strstr(o.message, "openai: HTTP 401 invalid_api_key"));
    assert_non_null(strstr(o.message, "anthropic: HTTP 401 authentication_error"));
    assert_non_null(strstr(o.message, "gemini: HTTP 502 (2 attempts)"));
    assert_no_keys(o.message);
}

static void transport_failures_are_retried(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai", 3, 5, 300);
    fake_script("openai", "[{\"reset\":true},{\"truncated_body\":true}]");
    fake_default("openai", VALID);
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_OK);
    assert_int_equal(o.attempts, 3);
    json_decref(o.output);
}

static void breaker_opens_half_opens_and_closes(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 1, 2, 1);
    fake_default("openai", "{\"error\":\"server\"}");
    fake_default("anthropic", VALID);
    struct llm_provider_status st[3];

    for (int i = 0; i < 2; i++) {
        struct outcome o = generate(fx, 10000, NULL);
        assert_string_equal(o.provider, "anthropic");
        json_decref(o.output);
    }
    assert_int_equal(fake_count("openai"), 2);
    llm_status(fx->llm, st, 3);
    assert_int_equal(st[0].breaker, LLM_OPEN);
    assert_int_equal(st[0].consecutive_failures, 2);

    /* OPEN: no request reaches openai */
    struct outcome o = generate(fx, 10000, NULL);
    assert_string_equal(o.provider, "anthropic");
    assert_int_equal(o.attempts, 1);
    json_decref(o.output);
    assert_int_equal(fake_count("openai"), 2);

    /* after the recovery time, one call goes through and its success closes */
    loop_wait_ms(fx, 1050);
    llm_status(fx->llm, st, 3);
    assert_int_equal(st[0].breaker, LLM_HALF_OPEN);
    fake_default("openai", VALID);
    o = generate(fx, 10000, NULL);
    assert_string_equal(o.provider, "openai");
    json_decref(o.output);
    llm_status(fx->llm, st, 3);
    assert_int_equal(st[0].breaker, LLM_CLOSED);
    assert_int_equal(st[0].consecutive_failures, 0);
}

static void breaker_reopens_when_the_trial_fails(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 1, 2, 1);
    fake_default("openai", "{\"error\":\"unavailable\"}");
    fake_default("anthropic", VALID);
    for (int i = 0; i < 2; i++) {
        struct outcome o = generate(fx, 10000, NULL);
        json_decref(o.output);
    }
    loop_wait_ms(fx, 1050);
    struct outcome o = generate(fx, 10000, NULL); /* the trial call fails */
    assert_string_equal(o.provider, "anthropic");
    json_decref(o.output);
    assert_int_equal(fake_count("openai"), 3);
    struct llm_provider_status st[3];
    llm_status(fx->llm, st, 3);
    assert_int_equal(st[0].breaker, LLM_OPEN);
    o = generate(fx, 10000, NULL); /* open again: skipped */
    json_decref(o.output);
    assert_int_equal(fake_count("openai"), 3);
}

static void every_circuit_open_is_unavailable(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,gemini", 1, 1, 300);
    fake_default("openai", "{\"error\":\"server\"}");
    fake_default("gemini", "{\"error\":\"overloaded\"}");
    struct outcome o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_EFAILED);
    assert_int_equal(o.retry_after_s, 0);

    o = generate(fx, 10000, NULL);
    assert_int_equal(o.status, LLM_EUNAVAILABLE);
    assert_true(o.retry_after_s >= 299 && o.retry_after_s <= 300);
    assert_int_equal(o.attempts, 0);
    assert_non_null(strstr(o.message, "openai: circuit open"));
    assert_non_null(strstr(o.message, "gemini: circuit open"));
    assert_int_equal(fake_count("openai"), 1);
    assert_int_equal(fake_count("gemini"), 1);
}

static void no_provider_is_unavailable(void **state) {
    struct fixture *fx = *state;
    struct llm_config cfg = {.breaker_threshold = 5, .breaker_recovery_s = 300, .attempts_per_provider = 2};
    fx->llm = llm_new(&fx->loop, fx->httpc, &cfg);
    assert_non_null(fx->llm);
    assert_int_equal(llm_provider_count(fx->llm), 0);
    struct outcome o = generate(fx, 1000, NULL);
    assert_int_equal(o.status, LLM_EUNAVAILABLE);
    assert_non_null(strstr(o.message, "OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY"));

    /* malformed requests: -1 and no callback */
    struct llm_request req = request(fx, 1000);
    req.schema_name = "has space";
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, NULL), -1);
    req = request(fx, 0);
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, NULL), -1);
    req = request(fx, 1000);
    req.user = NULL;
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, NULL), -1);
}

static void deadline_when_the_provider_hangs(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 2, 5, 300);
    fake_default("openai", "{\"hang\":true}");
    fake_default("anthropic", VALID);
    double elapsed;
    /* the hanging provider gets its share (half: one provider after it), the
     * next one the rest, and answers */
    struct outcome o = generate(fx, 800, &elapsed);
    assert_int_equal(o.status, LLM_OK);
    assert_string_equal(o.provider, "anthropic");
    assert_true(elapsed >= 0.375 && elapsed < 1.6);
    assert_non_null(strstr(o.message, "openai: no answer within its share of the deadline"));
    assert_int_equal(fake_count("anthropic"), 1);
    json_decref(o.output);

    /* both hang: the deadline, whole */
    json_decref(control("POST", "reset", NULL));
    fake_default("openai", "{\"hang\":true}");
    fake_default("anthropic", "{\"hang\":true}");
    o = generate(fx, 800, &elapsed);
    assert_int_equal(o.status, LLM_ETIMEDOUT);
    assert_true(elapsed >= 0.75 && elapsed < 1.6);
    assert_non_null(strstr(o.message, "openai:"));
    assert_non_null(strstr(o.message, "anthropic: no answer before the deadline"));
    assert_int_equal(fake_count("anthropic"), 1);
    json_decref(control("POST", "release", NULL));

    /* A slow answer inside the deadline is fine. */
    json_decref(control("POST", "reset", NULL));
    fake_default("openai", "{\"delay_ms\":300,\"answer\":{\"company\":\"Acme\",\"score\":3}}");
    o = generate(fx, 2000, &elapsed);
    assert_int_equal(o.status, LLM_OK);
    assert_true(elapsed >= 0.29);
    json_decref(o.output);
}

static void on_cancel_timer(uv_timer_t *t) { llm_cancel(t->data); }

static void cancel_in_flight_and_while_waiting(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 3, 5, 300);
    fake_default("openai", "{\"hang\":true}");

    /* at once, before any I/O */
    struct outcome o;
    memset(&o, 0, sizeof(o));
    struct llm_request req = request(fx, 10000);
    struct llm_op *op;
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, &op), 0);
    llm_cancel(op);
    assert_false(o.done); /* done comes later, from the loop */
    run_until(fx, &o.done);
    assert_int_equal(o.status, LLM_ECANCELED);
    assert_int_equal(o.calls, 1);

    /* while the request hangs */
    memset(&o, 0, sizeof(o));
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, &op), 0);
    uv_timer_t t;
    uv_timer_init(&fx->loop, &t);
    t.data = op;
    uv_timer_start(&t, on_cancel_timer, 300, 0);
    uint64_t start = uv_hrtime();
    run_until(fx, &o.done);
    assert_int_equal(o.status, LLM_ECANCELED);
    assert_true((double)(o.finished_ns - start) / 1e9 < 2.0);
    assert_int_equal(fake_count("anthropic"), 0);

    /* while waiting to retry (backoff after a 500) */
    fake_default("openai", "{\"error\":\"server\"}");
    memset(&o, 0, sizeof(o));
    assert_int_equal(llm_generate(fx->llm, &req, on_done, &o, &op), 0);
    t.data = op;
    uv_timer_start(&t, on_cancel_timer, 150, 0);
    run_until(fx, &o.done);
    assert_int_equal(o.status, LLM_ECANCELED);
    assert_int_equal(o.calls, 1);
    close_stack_handle(fx, (uv_handle_t *)&t);
    assert_int_equal(fake_count("anthropic"), 0);
}

struct close_ctx {
    struct llm *llm;
    bool closed;
};

static void on_close_timer(uv_timer_t *t) {
    struct close_ctx *c = t->data;
    llm_close(c->llm);
    c->closed = true;
}

static void close_with_calls_in_flight(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic", 3, 5, 300);
    fake_script("openai", "[{\"hang\":true},{\"error\":\"server\"}]");
    fake_default("openai", "{\"delay_ms\":2000}");
    struct outcome o[3];
    memset(o, 0, sizeof(o));
    struct llm_request req = request(fx, 10000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(llm_generate(fx->llm, &req, on_done, &o[i], NULL), 0);
    struct close_ctx c = {fx->llm, false};
    uv_timer_t t;
    uv_timer_init(&fx->loop, &t);
    t.data = &c;
    uv_timer_start(&t, on_close_timer, 200, 0);
    for (int i = 0; i < 3; i++)
        run_until(fx, &o[i].done);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].status, LLM_ECANCELED);
        assert_int_equal(o[i].calls, 1);
    }
    assert_true(c.closed);
    fx->llm = NULL; /* freed once the last op closed */
    close_stack_handle(fx, (uv_handle_t *)&t);

    /* closing an idle llm frees it at once */
    make_llm(fx, "openai", 1, 5, 300);
    llm_close(fx->llm);
    fx->llm = NULL;
}

static void many_concurrent_calls(void **state) {
    struct fixture *fx = *state;
    make_llm(fx, "openai,anthropic,gemini", 2, 5, 300);
    fake_default("*", "{\"delay_ms\":100,\"answer\":{\"company\":\"Acme\",\"score\":3}}");
    enum { N = 60 };
    struct outcome *o = calloc(N, sizeof(*o));
    struct llm_request req = request(fx, 10000);
    for (int i = 0; i < N; i++)
        assert_int_equal(llm_generate(fx->llm, &req, on_done, &o[i], NULL), 0);
    for (int i = 0; i < N; i++)
        run_until(fx, &o[i].done);
    for (int i = 0; i < N; i++) {
        assert_int_equal(o[i].status, LLM_OK);
        assert_string_equal(o[i].provider, "openai");
        json_decref(o[i].output);
    }
    free(o);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/fake_llm.py\n", argv[0]);
        return 2;
    }
    fake_script_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (start_fake() != 0) {
        fprintf(stderr, "cannot start %s\n", fake_script_path);
        stop_fake();
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(happy_path_each_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(strict_mode_nulls_for_optional_properties, setup, teardown),
        cmocka_unit_test_setup_teardown(failover_after_server_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(repair_on_the_same_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(repair_shapes_for_anthropic_and_gemini, setup, teardown),
        cmocka_unit_test_setup_teardown(repair_fails_then_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(all_invalid_is_einvalid, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_after_is_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_after_past_the_deadline_fails_over, setup, teardown),
        cmocka_unit_test_setup_teardown(unhealable_errors_are_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(all_failed_is_efailed_without_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(transport_failures_are_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(breaker_opens_half_opens_and_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(breaker_reopens_when_the_trial_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(every_circuit_open_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(no_provider_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(deadline_when_the_provider_hangs, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_in_flight_and_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(close_with_calls_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(many_concurrent_calls, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("llm", tests, NULL, NULL);
    stop_fake();
    curl_global_cleanup();
    return failed;
}
