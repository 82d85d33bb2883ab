/* What the generate-ai routes share: the body checked into template
 * variables, the generation run through the host, progress streamed as
 * Server-Sent Events when the client asks for text/event-stream, failures
 * told apart (422 / 502 / 503 + Retry-After / 504), and the task's own
 * post-processing before the answer. */
#ifndef GTM_GEN_ROUTE_H
#define GTM_GEN_ROUTE_H

#include <stdbool.h>

#include "crud.h"

struct gen_spec {
    const char *task;
    /* Checks body into vars (recording 422 entries) and sets *url when the
     * task reads a website. */
    void (*build)(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars, const char **url);
    /* Optional: adjusts output in place; 0, or an HTTP status with *detail. */
    int (*finish)(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *output,
                  const struct gtm_gen_result *res, const char **detail);
};

void gen_route(const struct crud_ctx *c, struct gtm_req *req, const struct gen_spec *spec);

/* Helpers for build functions: an optional string or object field copied
 * into vars (null when absent). */
void gen_var_str(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars, const char *key,
                 bool required);
void gen_var_obj(const struct crud_ctx *c, struct gtm_req *req, json_t *body, json_t *vars, const char *key);

#endif
