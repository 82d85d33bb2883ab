/* Host table members implemented outside host_api.c. */
#ifndef GTM_HOST_INTERNAL_H
#define GTM_HOST_INTERNAL_H

#include "gtm/gtm.h"

int host_pg_query(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmt, gtm_pg_done_fn done,
                  void *arg);
int host_pg_tx(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_pg_stmt *stmts, size_t n,
               gtm_pg_done_fn done, void *arg);
int host_pg_status(const struct gtm_pg_result *r);
const char *host_pg_sqlstate(const struct gtm_pg_result *r);
const char *host_pg_message(const struct gtm_pg_result *r);
int host_pg_failed_stmt(const struct gtm_pg_result *r);
int host_pg_ntuples(const struct gtm_pg_result *r, size_t stmt);
const char *host_pg_value(const struct gtm_pg_result *r, size_t stmt, int row, int col);
int host_pg_isnull(const struct gtm_pg_result *r, size_t stmt, int row, int col);
int host_pg_length(const struct gtm_pg_result *r, size_t stmt, int row, int col);
long host_pg_affected(const struct gtm_pg_result *r, size_t stmt);
void host_respond_pg_error(struct gtm_req *req, const struct gtm_pg_result *r);

struct gtm_jwks *host_jwks_parse(const char *json, size_t len, char *err, size_t errlen);
void host_jwks_free(struct gtm_jwks *ks);
int host_jwks_has_kid(const struct gtm_jwks *ks, const char *kid);
int host_jwt_peek_kid(const char *token, size_t len, char *kid, size_t kidlen);
int host_jwt_verify(const struct gtm_jwks *ks, const char *token, size_t len, json_t **claims, char *why,
                    size_t whylen);
int host_random_bytes(void *buf, size_t n);
void host_sha256_hex(const void *data, size_t len, char out[65]);
int64_t host_now_ms(void);

int host_generate(struct gtm_mod *mod, struct gtm_req *req, const struct gtm_gen_call *call,
                  gtm_gen_progress_fn progress, gtm_gen_done_fn done, void *arg);
int host_stream_begin(struct gtm_req *req, int status, const char *content_type);
int host_stream_write(struct gtm_req *req, const void *data, size_t len);
void host_stream_end(struct gtm_req *req);
int host_sse_event(struct gtm_req *req, const char *event, json_t *data);

#endif
