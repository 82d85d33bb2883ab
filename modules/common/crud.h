/* What the CRUD modules share: pydantic-style checks of body fields (the
 * upstream's 422 entries), and answering from the JSON that Postgres built.
 * Linked statically into each module; it calls the host only through the
 * table it is given. */
#ifndef GTM_CRUD_H
#define GTM_CRUD_H

#include <stdbool.h>
#include <stddef.h>

#include "gtm/gtm.h"

struct crud_ctx {
    const struct gtm_host *host;
    struct gtm_mod *self;
};

/* The body as a JSON object, or NULL after recording the error FastAPI gives
 * (missing body, json_invalid, model_attributes_type for a non-object). */
json_t *crud_body_object(const struct crud_ctx *c, struct gtm_req *req);

/* A string field.  present tells whether the key was in the body.  Records
 * missing (when required), string_type (not a string, or null when
 * !nullable), string_too_long (max_chars > 0, counted in characters) and
 * value_error (a NUL character, which Postgres cannot store; so do the two
 * below, for any string inside the value). */
const char *crud_field_str(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key,
                           bool required, bool nullable, size_t max_chars, bool *present);
/* An object field (dict_type); *out borrowed, NULL for JSON null. */
bool crud_field_obj(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key, bool required,
                    bool nullable, json_t **out, bool *present);
/* A list of strings (list_type, string_type per item). */
bool crud_field_str_list(const struct crud_ctx *c, struct gtm_req *req, json_t *body, const char *key,
                         bool required, bool nullable, json_t **out);

/* Characters in a UTF-8 string, as Python's len() counts them. */
size_t crud_utf8_len(const char *s);

/* A lowercase hyphenated UUID string? */
bool crud_is_uuid(const char *s);

/* The caller's user id (set by the auth module), or NULL after answering. */
const char *crud_user(const struct crud_ctx *c, struct gtm_req *req);

/* Answers with the text of row 0, column 0 (JSON that the query built), or
 * 404 {"detail": not_found} when there is no row; a failed result goes to
 * respond_pg_error. */
void crud_respond_row(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_result *res, int status,
                      const char *not_found);

/* A copy of text in request memory, or NULL (after answering 500). */
char *crud_strdup(const struct crud_ctx *c, struct gtm_req *req, const char *text);
/* A JSON value as compact text in request memory; NULL (after answering 500). */
char *crud_json_text(const struct crud_ctx *c, struct gtm_req *req, json_t *value);
/* "%ld" in request memory. */
const char *crud_long(const struct crud_ctx *c, struct gtm_req *req, long v);

/* skip and limit, as the upstream bounds them: 0 ok, -1 after recording. */
int crud_paging(const struct crud_ctx *c, struct gtm_req *req, long *skip, long *limit);

/* Runs a pg_tx of deletes whose last statement decides: 204 when it removed
 * a row, 404 {"detail": not_found} when none. */
void crud_delete_and_respond(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_stmt *stmts,
                             size_t n, const char *not_found);

/* Runs stmt, whose one row is (status, text): 2xx answers text as JSON,
 * anything else answers {"detail": text} with that status. */
void crud_query_status_and_respond(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_stmt *stmt);

/* The caller and the path's UUID parameter; false after answering (401/422). */
bool crud_path_id(const struct crud_ctx *c, struct gtm_req *req, const char *param, char id[37], const char **user);

/* GET by id: sql takes $1 = the path id, $2 = the caller, and returns the
 * row's JSON (no row: 404 not_found). */
void crud_get(const struct crud_ctx *c, struct gtm_req *req, const char *param, const char *sql,
              const char *not_found);

/* A field PUT may change. */
struct crud_field {
    const char *key;
    enum { CRUD_STR, CRUD_OBJ } kind;
    size_t max_chars;          /* CRUD_STR: 0 = no limit */
    bool nullable;             /* null stores SQL NULL; otherwise null is a 422 */
};
/* PUT by id: only the keys present change.  sql takes $1 = path id, $2 =
 * caller, then for each field a "t"/"f" present flag and its value (text, or
 * JSON text for CRUD_OBJ), and returns the row's JSON. */
void crud_update(const struct crud_ctx *c, struct gtm_req *req, const char *param, const struct crud_field *fields,
                 size_t n, const char *sql, const char *not_found);

/* Per-request state for a query callback, in request memory. */
struct crud_call {
    const struct crud_ctx *ctx;
    struct gtm_req *req;
    int status;                 /* the success status to answer with */
    const char *not_found;      /* the 404 detail */
};
/* Runs stmt and answers with crud_respond_row. */
void crud_query_and_respond(const struct crud_ctx *c, struct gtm_req *req, const struct gtm_pg_stmt *stmt,
                            int status, const char *not_found);

int crud_module_init(const struct gtm_host *host, struct gtm_mod *self, void **state);
void crud_module_fini(void *state);

/* The descriptor and entry point of a CRUD module whose state is a crud_ctx. */
/* modules/<name>/openapi.json, compiled in by modules/meson.build */
extern const char gtm_module_openapi[];

#define CRUD_MODULE(mod_name, route_table)                                   \
    static const struct gtm_module crud_module_desc = {                     \
        GTM_MODULE_STAMP,                                                   \
        .name = mod_name,                                                   \
        .version = GTM_MODULE_VERSION,                                      \
        .flags = GTM_MODULE_UNLOADABLE,                                     \
        .init = crud_module_init,                                           \
        .fini = crud_module_fini,                                           \
        .routes = route_table,                                              \
        .n_routes = sizeof route_table / sizeof route_table[0],            \
        .openapi = gtm_module_openapi,                                      \
    };                                                                      \
    GTM_EXPORT const struct gtm_module *gtm_module_v1(void)                 \
    {                                                                       \
        return &crud_module_desc;                                           \
    }

#endif
