#include "http/validate.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"
#include "http/response.h"

static int is_hex(int c)
{
    return isxdigit(c) != 0;
}

/* Length in bytes of the UTF-8 sequence at s, 0 when invalid.  Invalid as
 * jansson (and Python) judge it: overlong forms, surrogates and code points
 * past U+10FFFF too, so that what passes here can go into a JSON string (the
 * 422 entry's msg quotes the offending character). */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    if (n == 0 || n > avail) {
        return 0;
    }
    unsigned long cp = s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    static const unsigned long least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (n > 1 && (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
        return 0;
    }
    return n;
}

static int utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len((const unsigned char *)s + i, n - i);
        if (!l) {
            return 0;
        }
        i += l;
    }
    return 1;
}

static int hyphenated_ok(const char *s)
{
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }
        } else if (!is_hex((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

static void write_uuid(const char *hex32, char out[37])
{
    int j = 0;
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20) {
            out[j++] = '-';
        }
        out[j++] = (char)tolower((unsigned char)hex32[i]);
    }
    out[36] = '\0';
}

/* The diagnosis pydantic reports, following the uuid crate's rules. */
static void uuid_why(const char *s, size_t len, char *why, size_t whylen)
{
    if (!utf8_valid(s, len)) {
        snprintf(why, whylen, "non-UTF8 input");
        return;
    }
    const char *u = s;
    size_t ulen = len, offset = 0;
    int simple = 1;
    if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
        u = s + 1, ulen = len - 2, offset = 1, simple = 0;
    } else if (len >= 9 && strncmp(s, "urn:uuid:", 9) == 0) {
        u = s + 9, ulen = len - 9, offset = 9, simple = 0;
    }
    size_t hyphens = 0, bounds[4] = {0};
    for (size_t i = 0; i < ulen;) {
        size_t cl = utf8_len((const unsigned char *)u + i, ulen - i);
        unsigned char c = (unsigned char)u[i];
        if (cl > 1 || (c != '-' && !is_hex(c))) {
            snprintf(why, whylen,
                     "invalid character: expected an optional prefix of `urn:uuid:` followed by "
                     "[0-9a-fA-F-], found `%.*s` at %zu",
                     (int)cl, u + i, i + offset + 1);
            return;
        }
        if (c == '-') {
            if (hyphens < 4) {
                bounds[hyphens] = i;
            }
            hyphens++;
        }
        i += cl;
    }
    if (hyphens == 0 && simple) {
        snprintf(why, whylen, "invalid length: expected length 32 for simple format, found %zu", len);
        return;
    }
    if (hyphens != 4) {
        snprintf(why, whylen, "invalid group count: expected 5, found %zu", hyphens + 1);
        return;
    }
    static const size_t starts[5] = {0, 9, 14, 19, 24};
    static const int expect[5] = {8, 4, 4, 4, 12};
    for (int i = 0; i < 4; i++) {
        if (bounds[i] != starts[i + 1] - 1) {
            snprintf(why, whylen, "invalid group length in group %d: expected %d, found %zu", i, expect[i],
                     bounds[i] - starts[i]);
            return;
        }
    }
    /* the crate measures the last group against the whole input */
    snprintf(why, whylen, "invalid group length in group 4: expected 12, found %zu",
             len >= starts[4] ? len - starts[4] : 0);
}

int uuid_parse(const char *s, char out[37], char *why, size_t whylen)
{
    size_t len = strlen(s);
    char hex[33];
    const char *h = NULL;
    if (len == 32) {
        int ok = 1;
        for (int i = 0; i < 32; i++) {
            ok &= is_hex((unsigned char)s[i]);
        }
        if (ok) {
            write_uuid(s, out);
            return 0;
        }
    } else if (len == 36 && hyphenated_ok(s)) {
        h = s;
    } else if (len == 38 && s[0] == '{' && s[37] == '}' && hyphenated_ok(s + 1)) {
        h = s + 1;
    } else if (len == 45 && strncmp(s, "urn:uuid:", 9) == 0 && hyphenated_ok(s + 9)) {
        h = s + 9;
    }
    if (h) {
        int j = 0;
        for (int i = 0; i < 36; i++) {
            if (h[i] != '-') {
                hex[j++] = h[i];
            }
        }
        hex[32] = '\0';
        write_uuid(hex, out);
        return 0;
    }
    uuid_why(s, len, why, whylen);
    return -1;
}

int int_parse(const char *s, long *out)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1])) {
        len--;
    }
    if (len == 0 || len > 4300) {
        return INT_BAD;
    }
    char tmp[64];
    if (len >= sizeof tmp) {
        /* Only digits are worth anything this long: far out of any bound. */
        size_t i = (s[0] == '-' || s[0] == '+');
        for (size_t k = i; k < len; k++) {
            if (!isdigit((unsigned char)s[k])) {
                return INT_BAD;
            }
        }
        return s[0] == '-' ? INT_TOO_SMALL : INT_TOO_BIG;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *dot = strchr(tmp, '.');
    if (dot) {
        for (char *z = dot + 1; *z; z++) {
            if (*z != '0') {
                return INT_BAD;
            }
        }
        if (dot == tmp || !isdigit((unsigned char)dot[-1])) {
            return INT_BAD;
        }
        *dot = '\0';
    }
    const char *p = tmp;
    if (*p == '+' || *p == '-') {
        p++;
    }
    if (!*p) {
        return INT_BAD;
    }
    for (const char *q = p; *q; q++) {
        if (!isdigit((unsigned char)*q)) {
            return INT_BAD;
        }
    }
    errno = 0;
    long v = strtol(tmp, NULL, 10);
    if (errno == ERANGE) {
        return tmp[0] == '-' ? INT_TOO_SMALL : INT_TOO_BIG;
    }
    *out = v;
    return INT_OK;
}

void req_add_error(struct gtm_req *r, const char *type, json_t *loc, const char *msg, json_t *input,
                   json_t *ctx)
{
    if (!r->errors) {
        r->errors = json_array();
    }
    json_t *e = json_object();
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "loc", loc ? loc : json_array());
    json_object_set_new(e, "msg", json_string(msg));
    json_object_set_new(e, "input", input ? input : json_null());
    if (ctx) {
        json_object_set_new(e, "ctx", ctx);
    }
    json_array_append_new(r->errors, e);
}

int req_fail_if_invalid(struct gtm_req *r)
{
    if (!r->errors || json_array_size(r->errors) == 0) {
        return 0;
    }
    json_t *errors = r->errors;
    r->errors = NULL;
    response_error_json(r, 422, errors);
    return 1;
}

static json_t *loc2(const char *where, const char *name)
{
    return json_pack("[ss]", where, name);
}

int req_arg_uuid(struct gtm_req *r, const char *where, const char *name, int required, char out[37])
{
    const char *v = strcmp(where, "path") == 0 ? request_param(r, name) : request_query(r, name);
    if (!v) {
        if (required) {
            req_add_error(r, "missing", loc2(where, name), "Field required", NULL, NULL);
            return -1;
        }
        return 0;
    }
    char why[256];
    if (uuid_parse(v, out, why, sizeof why) == 0) {
        return 1;
    }
    char msg[320];
    snprintf(msg, sizeof msg, "Input should be a valid UUID, %s", why);
    req_add_error(r, "uuid_parsing", loc2(where, name), msg, json_string(v),
                  json_pack("{ss}", "error", why));
    return -1;
}

int req_arg_int(struct gtm_req *r, const char *name, long dflt, long min, long max, long *out)
{
    const char *v = request_query(r, name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    long n = 0;
    int rc = int_parse(v, &n);
    if (rc == INT_BAD) {
        req_add_error(r, "int_parsing", loc2("query", name),
                      "Input should be a valid integer, unable to parse string as an integer",
                      json_string(v), NULL);
        return -1;
    }
    char msg[128];
    if (rc == INT_TOO_SMALL || (rc == INT_OK && n < min)) {
        snprintf(msg, sizeof msg, "Input should be greater than or equal to %ld", min);
        req_add_error(r, "greater_than_equal", loc2("query", name), msg, json_string(v),
                      json_pack("{sI}", "ge", (json_int_t)min));
        return -1;
    }
    if (rc == INT_TOO_BIG && max == LONG_MAX) {
        /* no upper bound: an offset past every row is still an offset */
        *out = LONG_MAX;
        return 0;
    }
    if (rc == INT_TOO_BIG || (rc == INT_OK && n > max)) {
        snprintf(msg, sizeof msg, "Input should be less than or equal to %ld", max);
        req_add_error(r, "less_than_equal", loc2("query", name), msg, json_string(v),
                      json_pack("{sI}", "le", (json_int_t)max));
        return -1;
    }
    *out = n;
    return 0;
}

const char *json_error_python(const json_error_t *e, const char *text, size_t len, size_t *char_pos)
{
    const char *msg = "Expecting value";
    size_t pos = e->position > 0 ? (size_t)e->position - 1 : 0;
    switch (json_error_code(e)) {
    case json_error_end_of_input_expected:
        msg = "Extra data";
        break;
    case json_error_premature_end_of_input:
        pos = (size_t)e->position;
        if (strstr(e->text, "string")) {
            msg = "Unterminated string starting at";
        }
        break;
    default:
        if (strstr(e->text, "string or '}' expected")) {
            msg = "Expecting property name enclosed in double quotes";
        } else if (strstr(e->text, "'}' expected") || strstr(e->text, "']' expected")) {
            msg = "Expecting ',' delimiter";
        } else if (strstr(e->text, "':' expected")) {
            msg = "Expecting ':' delimiter";
        } else if (strstr(e->text, "control character")) {
            msg = "Invalid control character at";
        }
    }
    if (pos > len) {
        pos = len;
    }
    /* Python counts characters, not bytes. */
    size_t chars = 0;
    for (size_t i = 0; i < pos; i++) {
        chars += ((unsigned char)text[i] & 0xc0) != 0x80;
    }
    *char_pos = chars;
    return msg;
}

static int content_type_is_json(const char *ct)
{
    while (*ct == ' ') {
        ct++;
    }
    size_t n = strcspn(ct, "; ");
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) {
        return 1;
    }
    /* application/<anything>+json */
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

json_t *req_body_json(struct gtm_req *r)
{
    if (r->body_parsed) {
        return r->body_json;
    }
    r->body_parsed = true;
    const char *body = r->body.data ? buf_head(&r->body) : "";
    size_t len = r->body.data ? buf_pending(&r->body) : 0;
    if (len == 0) {
        req_add_error(r, "missing", json_pack("[s]", "body"), "Field required", NULL, NULL);
        return NULL;
    }
    const char *ct = request_header(r, "content-type");
    if (ct && *ct && !content_type_is_json(ct)) {
        /* FastAPI hands a non-JSON body to the model as bytes */
        json_t *input = json_stringn(body, len);
        req_add_error(r, "model_attributes_type", json_pack("[s]", "body"),
                      "Input should be a valid dictionary or object to extract fields from",
                      input ? input : json_null(), NULL);
        return NULL;
    }
    json_error_t e;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v) {
        size_t pos;
        const char *msg = json_error_python(&e, body, len, &pos);
        req_add_error(r, "json_invalid", json_pack("[sI]", "body", (json_int_t)pos), "JSON decode error",
                      json_object(), json_pack("{ss}", "error", msg));
        return NULL;
    }
    r->body_json = v;
    return v;
}
