/* The one way out: every answer, success or error, is serialised here, with
 * the request id, CORS headers and keep-alive decided in one place. */
#ifndef GTM_RESPONSE_H
#define GTM_RESPONSE_H

#include <jansson.h>
#include <stddef.h>

struct gtm_req;
struct conn;

/* Answers r (once).  body may be NULL with len 0. */
void response_send(struct gtm_req *r, int status, const char *content_type, const void *body,
                   size_t len);
/* body is stolen. */
void response_json(struct gtm_req *r, int status, json_t *body);
/* {"detail": detail} */
void response_error(struct gtm_req *r, int status, const char *detail);
/* {"detail": detail}, where detail is any JSON value (stolen). */
void response_error_json(struct gtm_req *r, int status, json_t *detail);
void response_add_header(struct gtm_req *r, const char *name, const char *value);

/* A streamed answer (Server-Sent Events): the head now, then chunks, then
 * the end, which completes the request.  HTTP/1.0 clients get the body
 * unframed and the connection closed after it.  Writes to a request whose
 * client has gone are dropped. */
int response_stream_begin(struct gtm_req *r, int status, const char *content_type);
int response_stream_write(struct gtm_req *r, const void *data, size_t len);
void response_stream_end(struct gtm_req *r);

/* An error for a request that never reached routing (bad syntax, too large,
 * too slow): written, logged, and the connection closed after it.  r may be
 * NULL. */
void response_send_standalone(struct conn *c, struct gtm_req *r, int status, const char *detail);

const char *response_reason(int status);

#endif
