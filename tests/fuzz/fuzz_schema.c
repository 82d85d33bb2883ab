/* libFuzzer target: the JSON Schema subset (core/schema).
 * Input: a mode byte, then JSON text.
 *   mode & 3 == 0   an instance, checked against one of the real output
 *                   schemas (prompts/<task>.schema.json, (mode >> 2) picks)
 *                   the way an LLM answer is: validate, then normalise
 *   mode & 3 == 1   a schema: compile, the OpenAI strict rewrite, and a few
 *                   fixed instances through validate and normalise
 *   mode & 3 >= 2   a schema and an instance, split where the two bytes after
 *                   the mode byte say
 * What must hold: validate's count equals the errors it lists (at most the
 * cap), each {"path": "/...", "message": "..."}; the plain valid/invalid
 * answer (max_errors 0) agrees; a valid instance normalises to something. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "schema/schema.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TASKS 16
static struct schema *tasks[MAX_TASKS];
static size_t n_tasks;

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = FUZZ_SOURCE_ROOT "/prompts";
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name);
    if (n < 0) {
        perror(dir);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        size_t l = strlen(nm);
        if (l > 12 && strcmp(nm + l - 12, ".schema.json") == 0 && n_tasks < MAX_TASKS) {
            char path[4096], err[256];
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            json_t *doc = json_load_file(path, 0, NULL);
            struct schema *s = doc ? schema_compile(doc, err, sizeof err) : NULL;
            if (!s) {
                fprintf(stderr, "fuzz: %s does not compile\n", path);
                exit(1);
            }
            json_decref(doc);
            tasks[n_tasks++] = s;
        }
        free(names[i]);
    }
    free(names);
    if (!n_tasks) {
        fprintf(stderr, "fuzz: no schema in %s\n", dir);
        exit(1);
    }
    return 0;
}

static void fail(const char *why, json_t *schema_doc, json_t *instance)
{
    char *s = schema_doc ? json_dumps(schema_doc, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *i = instance ? json_dumps(instance, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fprintf(stderr, "\n==fuzz== %s\n==fuzz== schema: %.2000s\n==fuzz== instance: %.2000s\n", why, s ? s : "-",
            i ? i : "-");
    abort();
}

static void check(const struct schema *s, json_t *instance)
{
    json_t *errors = NULL;
    size_t n = schema_validate(s, instance, &errors, 20);
    json_t *doc = schema_document(s);
    if (n > 20) {
        fail("more errors than the cap", doc, instance);
    }
    if (n && (!json_is_array(errors) || json_array_size(errors) != n)) {
        fail("the count is not the number of errors listed", doc, instance);
    }
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        const char *path = json_string_value(json_object_get(e, "path"));
        if (!path || (path[0] && path[0] != '/') || !json_is_string(json_object_get(e, "message"))) {
            fail("an error is not {path: \"/...\", message}", doc, instance);
        }
    }
    json_decref(errors);
    size_t plain = schema_validate(s, instance, NULL, 0);
    if ((plain == 0) != (n == 0)) {
        fail("max_errors 0 disagrees on validity", doc, instance);
    }
    if (n == 0) {
        json_t *norm = schema_normalize(s, instance);
        if (!norm) {
            fail("a valid instance did not normalise", doc, instance);
        }
        json_decref(norm);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if ((mode & 3) == 0) {
        json_t *v = json_loadb(text, len, JSON_DECODE_ANY, NULL);
        if (v) {
            check(tasks[(mode >> 2) % n_tasks], v);
            json_decref(v);
        }
        return 0;
    }
    size_t split = len;
    if ((mode & 3) >= 2 && !fuzz_split(&text, &len, &split)) {
        return 0;
    }
    json_t *doc = json_loadb(text, split, JSON_DECODE_ANY, NULL);
    if (!doc) {
        return 0;
    }
    char err[256];
    struct schema *s = schema_compile(doc, err, sizeof err);
    if (!s) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) {
            fail("a refused schema without a reason", doc, NULL);
        }
        json_decref(doc);
        return 0;
    }
    json_t *strict = schema_openai_strict(s);
    if (strict && !json_is_object(strict)) {
        fail("the strict rewrite is not an object", doc, NULL);
    }
    json_decref(strict);
    if ((mode & 3) == 1) {
        static const char *const fixed[] = {
            "null", "{}", "[]", "\"x\"", "1", "1.5", "true",
            "{\"name\":\"Acme\",\"items\":[1,\"b\",{}],\"n\":{\"a\":null}}",
        };
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
            json_t *v = json_loads(fixed[i], JSON_DECODE_ANY, NULL);
            check(s, v);
            json_decref(v);
        }
    } else {
        json_t *v = json_loadb(text + split, len - split, JSON_DECODE_ANY, NULL);
        if (v) {
            check(s, v);
            json_decref(v);
        }
    }
    schema_free(s);
    json_decref(doc);
    return 0;
}
