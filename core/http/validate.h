/* Upstream-style (FastAPI/pydantic v2) request validation: the parsers and the
 * 422 entries they record. */
#ifndef GTM_VALIDATE_H
#define GTM_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

struct gtm_req;

/* Parses a UUID as pydantic does (simple, hyphenated, {braced}, urn:uuid:,
 * any case) into lowercase hyphenated out[37].  0, or -1 with pydantic's
 * reason (e.g. "invalid group count: expected 5, found 1") in why. */
int uuid_parse(const char *s, char out[37], char *why, size_t whylen);

enum int_parse { INT_OK = 0, INT_BAD = -1, INT_TOO_BIG = 1, INT_TOO_SMALL = 2 };
/* Parses an integer as pydantic's lax mode does for strings (surrounding
 * white space, sign, trailing ".000").  Out of the long range gives
 * INT_TOO_BIG/INT_TOO_SMALL, which bounded checks treat as out of bounds. */
int int_parse(const char *s, long *out);

void req_add_error(struct gtm_req *r, const char *type, json_t *loc, const char *msg, json_t *input,
                   json_t *ctx);
int req_fail_if_invalid(struct gtm_req *r);
json_t *req_body_json(struct gtm_req *r);
int req_arg_uuid(struct gtm_req *r, const char *where, const char *name, int required, char out[37]);
int req_arg_int(struct gtm_req *r, const char *name, long dflt, long min, long max, long *out);

/* Python's json error message for a jansson error, and its character offset. */
const char *json_error_python(const json_error_t *e, const char *text, size_t len, size_t *char_pos);

#endif
