#include "http/response.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http/conn.h"
#include "http/request.h"
#include "log.h"
#include "metrics.h"
#include "modules/module_host.h"
#include "server.h"

/* Rate-limit and id headers a cross-origin SPA needs to read (upstream
 * exposed none, so its SPA could not show limits). */
static const char expose_headers[] =
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-RateLimit-Tier, "
    "X-RateLimit-Scope, X-RateLimit-Bypass, Retry-After, X-Request-Id";

const char *response_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static const char *date_now(struct server *srv)
{
    time_t now = time(NULL);
    if (now != srv->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        srv->date_sec = now;
    }
    return srv->date;
}

static void put_header(struct buf *o, const char *name, const char *value)
{
    buf_append(o, name, strlen(name));
    buf_append(o, ": ", 2);
    buf_append(o, value, strlen(value));
    buf_append(o, "\r\n", 2);
}

static void put_cors(struct buf *o, const struct gtm_req *r)
{
    if (!r->origin) {
        return;
    }
    if (r->origin_allowed) {
        put_header(o, "access-control-allow-origin", r->origin);
        put_header(o, "vary", "Origin");
        put_header(o, "access-control-expose-headers", expose_headers);
    }
    put_header(o, "access-control-allow-credentials", "true");
}

void response_add_header(struct gtm_req *r, const char *name, const char *value)
{
    struct resp_header *h = arena_alloc(&r->arena, sizeof *h);
    if (!h) {
        return;
    }
    h->name = arena_strdup(&r->arena, name);
    h->value = arena_strdup(&r->arena, value);
    if (!h->name || !h->value) {
        return;
    }
    /* Header injection guard: a value with CR or LF is dropped, never sent. */
    if (strpbrk(h->value, "\r\n") || strpbrk(h->name, "\r\n: ")) {
        log_msg(LOG_WARN, r->id, NULL, "dropped response header %s: it holds CR, LF or a bad name",
                h->name);
        return;
    }
    h->next = r->resp_headers;
    r->resp_headers = h;
}

static void access_log(struct gtm_req *r)
{
    const char *route = r->route ? r->route->pattern : r->path ? "(unmatched)" : "(unparsed)";
    metrics_observe(r->srv->metrics, route, r->method_name ? r->method_name : "-", r->status,
                    (double)(now_ns() - r->start_ns) / 1e9,
                    r->route && (r->route->flags & GTM_ROUTE_RATELIMIT));
    struct access_entry e = {
        .req_id = r->id,
        .method = r->method_name,
        .path = r->path ? r->path : r->url,
        .status = r->status,
        .bytes = r->resp_bytes,
        .duration_ms = (double)(now_ns() - r->start_ns) / 1e6,
        .client = r->conn ? r->conn->peer : NULL,
    };
    log_access(&e);
}

/* Status line and headers, up to the blank line.  body_len (size_t)-1 means
 * no body and no length; (size_t)-2 a chunked body. */
static void put_head(struct buf *o, struct gtm_req *r, int status, const char *content_type, size_t body_len)
{
    struct server *srv = r->srv;
    buf_printf(o, "HTTP/1.1 %d %s\r\n", status, response_reason(status));
    put_header(o, "date", date_now(srv));
    put_header(o, "server", "gtmd");
    if (body_len != (size_t)-1) {
        if (content_type) {
            put_header(o, "content-type", content_type);
        }
        if (body_len == (size_t)-2) {
            if (r->chunked_out) {
                put_header(o, "transfer-encoding", "chunked");
            }
            put_header(o, "cache-control", "no-cache");
        } else {
            buf_printf(o, "content-length: %zu\r\n", body_len);
        }
    }
    put_header(o, "x-request-id", r->id);
    if (r->mod) {
        /* which build answered: what an operator watches during a hot swap */
        buf_printf(o, "x-gtm-module: %s/%s\r\n", module_name(r->mod),
                   r->mod->desc->version ? r->mod->desc->version : "");
    }
    put_cors(o, r);
    for (const struct resp_header *h = r->resp_headers; h; h = h->next) {
        put_header(o, h->name, h->value);
    }
    if (r->close_after) {
        put_header(o, "connection", "close");
    } else if (r->http_minor == 0) {
        put_header(o, "connection", "keep-alive");
    }
    buf_append(o, "\r\n", 2);
}

void response_send(struct gtm_req *r, int status, const char *content_type, const void *body,
                   size_t len)
{
    if (r->abandoned) {
        return;   /* the host answered it at the drain deadline */
    }
    if (r->state == REQ_RESPONDED || r->state == REQ_STREAMING) {
        log_msg(LOG_ERROR, r->id, r->mod ? module_name(r->mod) : NULL,
                "second answer to one request (status %d) ignored", status);
        return;
    }
    r->state = REQ_RESPONDED;
    r->status = status;
    /* conn_send may close the connection, which drops its reference */
    request_ref(r);
    struct conn *c = r->conn;
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    r->resp_bytes = no_body ? 0 : len;
    if (c) {
        struct server *srv = r->srv;
        if (!r->keep_alive || c->want_close || srv->draining) {
            r->close_after = true;
        }
        struct buf *o = &srv->scratch;
        buf_reset(o);
        put_head(o, r, status, content_type, no_body ? (size_t)-1 : len);
        if (!no_body && r->method != GTM_HEAD && len) {
            buf_append(o, body, len);
        }
        conn_send(c, buf_head(o), buf_pending(o));
        buf_reset(o);
        c = r->conn;
    }
    access_log(r);
    if (c) {
        conn_request_done(c, r);
    }
    request_unref(r);
}

int response_stream_begin(struct gtm_req *r, int status, const char *content_type)
{
    if (r->state == REQ_RESPONDED || r->state == REQ_STREAMING) {
        log_msg(LOG_ERROR, r->id, r->mod ? module_name(r->mod) : NULL, "stream begun on an answered request");
        return -1;
    }
    r->state = REQ_STREAMING;
    r->status = status;
    struct conn *c = r->conn;
    if (!c) {
        return 0;
    }
    r->chunked_out = r->http_minor >= 1;
    if (!r->chunked_out || !r->keep_alive || c->want_close || r->srv->draining) {
        r->close_after = true;
    }
    struct buf *o = &r->srv->scratch;
    buf_reset(o);
    put_head(o, r, status, content_type, (size_t)-2);
    request_ref(r);
    conn_send(c, buf_head(o), buf_pending(o));
    buf_reset(o);
    request_unref(r);
    return 0;
}

int response_stream_write(struct gtm_req *r, const void *data, size_t len)
{
    if (r->state != REQ_STREAMING || len == 0) {
        return r->state == REQ_STREAMING ? 0 : -1;
    }
    r->resp_bytes += len;
    struct conn *c = r->conn;
    if (!c || r->method == GTM_HEAD) {
        return 0;
    }
    request_ref(r);
    if (r->chunked_out) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        conn_send(c, size, (size_t)n);
        if (r->conn) {
            conn_send(r->conn, data, len);
        }
        if (r->conn) {
            conn_send(r->conn, "\r\n", 2);
        }
    } else {
        conn_send(c, data, len);
    }
    request_unref(r);
    return 0;
}

void response_stream_end(struct gtm_req *r)
{
    if (r->state != REQ_STREAMING) {
        return;
    }
    r->state = REQ_RESPONDED;
    request_ref(r);
    struct conn *c = r->conn;
    if (c && r->chunked_out && r->method != GTM_HEAD) {
        conn_send(c, "0\r\n\r\n", 5);
        c = r->conn;
    }
    access_log(r);
    if (c) {
        conn_request_done(c, r);
    }
    request_unref(r);
}

void response_json(struct gtm_req *r, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!text) {
        response_send(r, 500, "application/json", "{\"detail\":\"Internal server error\"}", 34);
        return;
    }
    response_send(r, status, "application/json", text, strlen(text));
    free(text);
}

void response_error_json(struct gtm_req *r, int status, json_t *detail)
{
    json_t *body = json_object();
    json_object_set_new(body, "detail", detail ? detail : json_null());
    response_json(r, status, body);
}

void response_error(struct gtm_req *r, int status, const char *detail)
{
    response_error_json(r, status, json_string(detail));
}

void response_send_standalone(struct conn *c, struct gtm_req *r, int status, const char *detail)
{
    if (!r) {
        r = request_new(c->srv, c);
        if (!r) {
            conn_abort(c);
            return;
        }
        c->req = r;
    }
    if (r->state == REQ_RESPONDED) {
        conn_abort(c);
        return;
    }
    const char *origin = request_header(r, "origin");
    if (origin && !r->origin) {
        r->origin = origin;
        r->origin_allowed = server_origin_allowed(c->srv, origin);
    }
    r->keep_alive = false;
    r->close_after = true;
    if (!r->method_name) {
        r->method_name = "-";
    }
    response_error(r, status, detail);
}
