/* Prompts: for each generation task, prompts/<task>.system.tmpl,
 * prompts/<task>.user.tmpl and prompts/<task>.schema.json, loaded once at
 * start.  Templates use a small logic-less language, rendered without HTML
 * escaping:
 *   {{name}} {{a.b.c}}      a value: strings as they are, numbers and booleans
 *                            printed, objects and arrays as compact JSON, null
 *                            and missing as nothing
 *   {{json name}}           the value as JSON (pretty, keys in their order;
 *                            null when missing)
 *   {{#name}}...{{/name}}   the block when name is truthy (non-empty string,
 *                            non-zero number, true, non-empty array or object);
 *                            for an array, once per item, with {{.}} the item
 *                            and the item's fields in scope; otherwise once,
 *                            the same way with the value
 *   {{^name}}...{{/name}}   the block when name is falsy
 *   {{! comment }}          nothing (may span lines)
 * Names are letters, digits, '_' and '-'.  A line holding only a section tag
 * or a comment leaves no blank line behind.  Values are never re-read as
 * template text. */
#ifndef GTM_PROMPT_H
#define GTM_PROMPT_H

#include <jansson.h>
#include <stddef.h>

struct tmpl;
struct prompts;
struct schema;

/* One template.  NULL with "line N: reason" in err. */
struct tmpl *tmpl_parse(const char *text, size_t len, char *err, size_t errlen);
void tmpl_free(struct tmpl *t);
/* The rendering as a new malloc'd string, or NULL with a reason (out of memory). */
char *tmpl_render(const struct tmpl *t, json_t *vars, char *err, size_t errlen);

/* Loads every task in dir (a task is present when its three files are; one
 * or two of them alone is an error, as is a directory with no task).
 * NULL with a one-line reason naming the file and line. */
struct prompts *prompts_load(const char *dir, char *err, size_t errlen);
void prompts_free(struct prompts *p);
/* 1 when the task exists. */
int prompts_has(const struct prompts *p, const char *task);
/* Renders both parts (caller frees each).  0, or -1 with a reason. */
int prompts_render(const struct prompts *p, const char *task, json_t *vars, char **system, char **user, char *err,
                   size_t errlen);
/* The task's compiled output schema (owned by p). */
const struct schema *prompts_schema(const struct prompts *p, const char *task);

#endif
