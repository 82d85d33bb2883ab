/* A directory of prompts: <task>.system.tmpl, <task>.user.tmpl and
 * <task>.schema.json per task, parsed and compiled once. */
#include "util/err.h"
#include "prompt/prompt.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "schema/schema.h"

/* Prompt files are a few KiB; anything this large is a mistake. */
#define MAX_TEMPLATE_BYTES (4u << 20)

static const char SYSTEM_SUFFIX[] = ".system.tmpl";
static const char USER_SUFFIX[] = ".user.tmpl";
static const char SCHEMA_SUFFIX[] = ".schema.json";

struct task {
    char *name;
    struct tmpl *system;
    struct tmpl *user;
    struct schema *schema;
};

struct prompts {
    struct task *tasks;
    size_t count;
};

static char *join_path(const char *dir, const char *task, const char *suffix)
{
    size_t len = strlen(dir) + 1 + strlen(task) + strlen(suffix) + 1;
    char *path = malloc(len);
    if (path) {
        snprintf(path, len, "%s/%s%s", dir, task, suffix);
    }
    return path;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The whole file as a new malloc'd buffer, or NULL with a reason. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *data = NULL;
    size_t used = 0, cap = 0;
    for (;;) {
        if (cap - used < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(data, cap);
            if (!grown) {
                err_set(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            data = grown;
        }
        size_t n = fread(data + used, 1, cap - used, f);
        used += n;
        if (used > MAX_TEMPLATE_BYTES) {
            err_set(err, errlen, "%s: larger than %u bytes", path, MAX_TEMPLATE_BYTES);
            goto fail;
        }
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    *len = used;
    return data;
fail:
    fclose(f);
    free(data);
    return NULL;
}

static struct tmpl *load_template(const char *path, char *err, size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text) {
        return NULL;
    }
    char why[256];
    struct tmpl *t = tmpl_parse(text, len, why, sizeof why);
    free(text);
    if (!t) {
        err_set(err, errlen, "%s: %s", path, why);
    }
    return t;
}

static struct schema *load_schema(const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        err_set(err, errlen, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    char why[256];
    struct schema *s = schema_compile(doc, why, sizeof why);
    json_decref(doc); /* the schema holds its own reference */
    if (!s) {
        err_set(err, errlen, "%s: %s", path, why);
    }
    return s;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every task named by any of its files, sorted and without repeats, so that a
 * task missing a file is reported rather than skipped. */
static int list_tasks(const char *dir, char ***tasks, size_t *count, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    static const char *const suffixes[] = {SYSTEM_SUFFIX, USER_SUFFIX, SCHEMA_SUFFIX};
    while ((e = readdir(d))) {
        size_t suffix_len = 0;
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
            if (ends_with(e->d_name, suffixes[i])) {
                suffix_len = strlen(suffixes[i]);
            }
        }
        if (suffix_len == 0 || e->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                goto oom;
            }
            names = grown;
        }
        if (!(names[n] = strndup(e->d_name, strlen(e->d_name) - suffix_len))) {
            goto oom;
        }
        n++;
    }
    closedir(d);
    if (n > 0) {
        qsort(names, n, sizeof *names, compare_names);
    }
    size_t unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (unique > 0 && strcmp(names[unique - 1], names[i]) == 0) {
            free(names[i]);
        } else {
            names[unique++] = names[i];
        }
    }
    *tasks = names;
    *count = unique;
    return 0;
oom:
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    err_set(err, errlen, "%s: out of memory", dir);
    return -1;
}

static int load_task(const char *dir, struct task *task, char *err, size_t errlen)
{
    char *system_path = join_path(dir, task->name, SYSTEM_SUFFIX);
    char *user_path = join_path(dir, task->name, USER_SUFFIX);
    char *schema_path = join_path(dir, task->name, SCHEMA_SUFFIX);
    int rc = -1;
    if (!system_path || !user_path || !schema_path) {
        err_set(err, errlen, "%s: out of memory", dir);
        goto done;
    }
    const char *paths[] = {system_path, user_path, schema_path};
    for (size_t i = 0; i < 3; i++) {
        if (!file_exists(paths[i])) {
            err_set(err, errlen, "%s: missing (each prompt task needs %s%s, %s%s and %s%s)", paths[i], task->name,
                    SYSTEM_SUFFIX, task->name, USER_SUFFIX, task->name, SCHEMA_SUFFIX);
            goto done;
        }
    }
    if ((task->system = load_template(system_path, err, errlen)) && (task->user = load_template(user_path, err, errlen)) &&
        (task->schema = load_schema(schema_path, err, errlen))) {
        rc = 0;
    }
done:
    free(system_path);
    free(user_path);
    free(schema_path);
    return rc;
}

struct prompts *prompts_load(const char *dir, char *err, size_t errlen)
{
    char **names;
    size_t count;
    if (list_tasks(dir, &names, &count, err, errlen) < 0) {
        return NULL;
    }
    struct prompts *p = calloc(1, sizeof *p);
    if (!p || (count > 0 && !(p->tasks = calloc(count, sizeof *p->tasks)))) {
        for (size_t i = 0; i < count; i++) {
            free(names[i]);
        }
        free(names);
        free(p);
        err_set(err, errlen, "%s: out of memory", dir);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        p->tasks[i].name = names[i]; /* the task owns its name from here */
    }
    p->count = count;
    free(names);
    if (count == 0) {
        err_set(err, errlen, "%s: no prompts (expected <task>%s, <task>%s and <task>%s)", dir, SYSTEM_SUFFIX,
                USER_SUFFIX, SCHEMA_SUFFIX);
        prompts_free(p);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        if (load_task(dir, &p->tasks[i], err, errlen) < 0) {
            prompts_free(p);
            return NULL;
        }
    }
    return p;
}

void prompts_free(struct prompts *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->count; i++) {
        free(p->tasks[i].name);
        tmpl_free(p->tasks[i].system);
        tmpl_free(p->tasks[i].user);
        schema_free(p->tasks[i].schema);
    }
    free(p->tasks);
    free(p);
}

static const struct task *find_task(const struct prompts *p, const char *name)
{
    if (!p || !name) {
        return NULL;
    }
    for (size_t i = 0; i < p->count; i++) {
        if (strcmp(p->tasks[i].name, name) == 0) {
            return &p->tasks[i];
        }
    }
    return NULL;
}

int prompts_has(const struct prompts *p, const char *task)
{
    return find_task(p, task) != NULL;
}

int prompts_render(const struct prompts *p, const char *task, json_t *vars, char **system, char **user, char *err,
                   size_t errlen)
{
    *system = *user = NULL;
    const struct task *t = find_task(p, task);
    if (!t) {
        err_set(err, errlen, "no prompt for task '%s'", task ? task : "(null)");
        return -1;
    }
    char why[128];
    if (!(*system = tmpl_render(t->system, vars, why, sizeof why))) {
        err_set(err, errlen, "%s%s: %s", t->name, SYSTEM_SUFFIX, why);
        return -1;
    }
    if (!(*user = tmpl_render(t->user, vars, why, sizeof why))) {
        err_set(err, errlen, "%s%s: %s", t->name, USER_SUFFIX, why);
        free(*system);
        *system = NULL;
        return -1;
    }
    return 0;
}

const struct schema *prompts_schema(const struct prompts *p, const char *task)
{
    const struct task *t = find_task(p, task);
    return t ? t->schema : NULL;
}
