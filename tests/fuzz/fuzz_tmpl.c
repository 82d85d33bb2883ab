/* libFuzzer target: the prompt template language (core/prompt).
 * Input: a mode byte, then text.
 *   mode & 3 == 0   a template: parsed, then rendered with a fixed set of
 *                   variables (strings, numbers, nested objects, lists) and
 *                   with none
 *   mode & 3 == 1   a template and the variables (JSON), split where the two
 *                   bytes after the mode byte say
 *   mode & 3 == 2   the variables (JSON) for a real task's templates
 *                   (prompts/, (mode >> 2) picks the task), rendered by
 *                   prompts_render as a generation does
 *   mode & 3 == 3   a value for {{v}}: it must come out exactly as given,
 *                   never read as template text
 * What must hold: a refused template says why ("line N: ..."); a parsed one
 * renders, or stops at the renderer's output or step bound, saying so. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "prompt/prompt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TASKS 16
static struct prompts *prompts;
static char *task_names[MAX_TASKS];
static size_t n_tasks;
static json_t *fixed_vars;
static struct tmpl *echo;

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = FUZZ_SOURCE_ROOT "/prompts";
    char err[512];
    prompts = prompts_load(dir, err, sizeof err);
    if (!prompts) {
        fprintf(stderr, "fuzz: %s: %s\n", dir, err);
        exit(1);
    }
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name);
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        size_t l = strlen(nm);
        if (l > 12 && strcmp(nm + l - 12, ".schema.json") == 0 && n_tasks < MAX_TASKS) {
            task_names[n_tasks] = strndup(nm, l - 12);
            if (prompts_has(prompts, task_names[n_tasks])) {
                n_tasks++;
            }
        }
        free(names[i]);
    }
    free(n >= 0 ? names : NULL);
    if (!n_tasks) {
        fprintf(stderr, "fuzz: no task in %s\n", dir);
        exit(1);
    }
    fixed_vars = json_loads("{\"website_url\":\"https://acme.example\",\"company_name\":\"Acme\","
                            "\"website_content\":\"Acme makes {{anvils}}.\\nTwo lines.\",\"n\":3,\"zero\":0,"
                            "\"pi\":3.25,\"yes\":true,\"no\":false,\"nothing\":null,\"empty\":\"\",\"list\":[],"
                            "\"user_inputted_context\":{\"name\":\"A\",\"tags\":[\"x\",\"y\"]},"
                            "\"items\":[{\"name\":\"one\",\"v\":1},{\"name\":\"two\",\"sub\":{\"k\":[1,2]}},\"bare\",7]}",
                            0, NULL);
    echo = tmpl_parse("[{{v}}]", 7, err, sizeof err);
    if (!fixed_vars || !echo) {
        fprintf(stderr, "fuzz: cannot set up the fixed variables\n");
        exit(1);
    }
    return 0;
}

static void fail(const char *why, const char *text, size_t len, const char *out)
{
    fprintf(stderr, "\n==fuzz== %s\n==fuzz== input (%zu bytes): %.*s\n==fuzz== output: %.2000s\n", why, len,
            (int)(len > 2000 ? 2000 : len), text, out ? out : "-");
    abort();
}

static void render(const struct tmpl *t, json_t *vars, const char *text, size_t len)
{
    char err[256];
    char *out = tmpl_render(t, vars, err, sizeof err);
    /* sections nested over lists may hit the renderer's bounds: said, and
     * quickly (a timeout here is a finding) */
    if (!out && strncmp(err, "the rendered text would exceed", 30) != 0 &&
        strncmp(err, "the rendering would take more than", 34) != 0) {
        fail("a parsed template did not render", text, len, err);
    }
    free(out);
}

static void parse_and_render(const char *text, size_t len, json_t *vars)
{
    char err[256];
    err[0] = '\0';
    struct tmpl *t = tmpl_parse(text, len, err, sizeof err);
    if (!t) {
        if (strncmp(err, "line ", 5) != 0) {
            fail("a refused template without \"line N: reason\"", text, len, err);
        }
        return;
    }
    render(t, vars, text, len);
    if (vars == fixed_vars) {
        json_t *none = json_object();
        render(t, none, text, len);
        json_decref(none);
    }
    tmpl_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    unsigned mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    switch (mode & 3) {
    case 0:
        parse_and_render(text, len, fixed_vars);
        break;
    case 1: {
        size_t split;
        if (!fuzz_split(&text, &len, &split)) {
            return 0;
        }
        json_t *vars = json_loadb(text + split, len - split, 0, NULL);
        parse_and_render(text, split, json_is_object(vars) ? vars : fixed_vars);
        json_decref(vars);
        break;
    }
    case 2: {
        json_t *vars = json_loadb(text, len, 0, NULL);
        if (json_is_object(vars)) {
            char *sys = NULL, *user = NULL, err[256];
            if (prompts_render(prompts, task_names[(mode >> 2) % n_tasks], vars, &sys, &user, err, sizeof err) != 0) {
                fail("a task's templates did not render", text, len, err);
            }
            free(sys);
            free(user);
        }
        json_decref(vars);
        break;
    }
    default: {
        if (memchr(text, '\0', len)) {
            return 0;   /* the rendering is a C string */
        }
        json_t *vars = json_pack("{s:s%}", "v", text, len);
        if (!vars) {
            return 0;   /* not UTF-8: JSON strings cannot hold it */
        }
        char err[256];
        char *out = tmpl_render(echo, vars, err, sizeof err);
        if (!out || strlen(out) != len + 2 || out[0] != '[' || memcmp(out + 1, text, len) != 0 || out[len + 1] != ']') {
            fail("{{v}} did not come out exactly as given", text, len, out);
        }
        free(out);
        json_decref(vars);
        break;
    }
    }
    return 0;
}
