/* One outbound call: validating and copying the request, the easy handle's
 * options, the body and header callbacks, and the result handed to done. */
#include "fetch/httpc_call.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "gtm/module.h"

/* A field of struct gtm_http_call is readable only if the caller's struct has it. */
#define SPEC_HAS(spec, field) \
    ((spec)->size >= offsetof(struct gtm_http_call, field) + sizeof((spec)->field))

/* ---- the request -------------------------------------------------------- */

static bool is_tchar(unsigned char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool valid_method(const char *m) {
    if (!*m)
        return false;
    for (; *m; m++)
        if (!is_tchar((unsigned char)*m))
            return false;
    return true;
}

static bool is_http_url(const char *url) {
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

int httpc_request_read(const struct gtm_http_call *spec, struct httpc_request *req) {
    memset(req, 0, sizeof(*req));
    if (!spec || !SPEC_HAS(spec, url) || !spec->url || !is_http_url(spec->url))
        return GTM_EINVAL;
    req->url = spec->url;
    req->method = spec->method ? spec->method : "GET";
    req->headers = SPEC_HAS(spec, headers) ? spec->headers : NULL;
    req->body = SPEC_HAS(spec, body) ? spec->body : NULL;
    req->body_len = SPEC_HAS(spec, body_len) ? spec->body_len : 0;
    req->timeout_ms = SPEC_HAS(spec, timeout_ms) ? spec->timeout_ms : 0;
    req->max_response = SPEC_HAS(spec, max_response) ? spec->max_response : 0;
    if (!valid_method(req->method) || (req->body_len && !req->body) || req->timeout_ms < 0)
        return GTM_EINVAL;
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        if (strpbrk(req->headers[i], "\r\n") || !strchr(req->headers[i], ':'))
            return GTM_EINVAL; /* would smuggle extra header lines */
    }
    if (!req->timeout_ms)
        req->timeout_ms = HTTPC_DEFAULT_TIMEOUT_MS;
    if (!req->max_response)
        req->max_response = HTTPC_DEFAULT_MAX_RESPONSE;
    return 0;
}

static const char *result_header(const struct gtm_http_result *res, const char *name);

struct httpc_call *httpc_call_new(const struct httpc_request *req) {
    struct httpc_call *call = calloc(1, sizeof(*call));
    if (!call)
        return NULL;
    call->started_ns = uv_hrtime();
    call->max_response = req->max_response;
    call->timeout_ms = req->timeout_ms;
    call->is_head = strcmp(req->method, "HEAD") == 0;
    call->result.size = sizeof(call->result);
    call->result.body = "";
    call->result.header = result_header;

    if (req->body_len) {
        call->req_body = malloc(req->body_len);
        if (!call->req_body)
            goto fail;
        memcpy(call->req_body, req->body, req->body_len);
    }
    bool has_expect = false;
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        struct curl_slist *l = curl_slist_append(call->req_headers, req->headers[i]); /* copies */
        if (!l)
            goto fail;
        call->req_headers = l;
        has_expect |= strncasecmp(req->headers[i], "Expect:", 7) == 0;
    }
    if (req->body_len && !has_expect) {
        /* Servers that ignore Expect would stall big bodies for a second. */
        struct curl_slist *l = curl_slist_append(call->req_headers, "Expect:");
        if (!l)
            goto fail;
        call->req_headers = l;
    }
    return call;

fail:
    httpc_call_free(call);
    return NULL;
}

void httpc_call_drop_request(struct httpc_call *call) {
    curl_slist_free_all(call->req_headers);
    call->req_headers = NULL;
    free(call->req_body);
    call->req_body = NULL;
}

bool httpc_call_apply_options(struct httpc_call *call, const struct httpc_request *req,
                              const struct httpc_options *opts) {
    if (!opts)
        return true;
    /* Other methods would need the body and method rewritten per status. */
    if (call->is_head || strcmp(req->method, "GET") == 0)
        call->max_redirects = opts->max_redirects;
    call->address_allowed = opts->address_allowed;
    call->address_arg = opts->address_arg;
    if (opts->user_agent) {
        call->user_agent = strdup(opts->user_agent);
        if (!call->user_agent)
            return false;
    }
    return true;
}

static bool is_credential_header(const char *line) {
    static const char *const names[] = {"Authorization:", "Proxy-Authorization:", "Cookie:"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strncasecmp(line, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

bool httpc_call_drop_credentials(struct httpc_call *call) {
    bool found = false;
    for (struct curl_slist *l = call->req_headers; l && !found; l = l->next)
        found = is_credential_header(l->data);
    if (!found)
        return false;
    struct curl_slist *kept = NULL;
    for (struct curl_slist *l = call->req_headers; l; l = l->next) {
        if (is_credential_header(l->data))
            continue;
        struct curl_slist *n = curl_slist_append(kept, l->data);
        if (!n) {
            /* Out of memory: sending no headers at all still leaks nothing. */
            curl_slist_free_all(kept);
            kept = NULL;
            break;
        }
        kept = n;
    }
    curl_slist_free_all(call->req_headers);
    call->req_headers = kept;
    return true;
}

void httpc_call_reset_response(struct httpc_call *call) {
    call->body_len = 0;
    call->hdrs_len = 0;
    call->block_status = 0;
    call->error = 0;
    call->why[0] = '\0';
    call->errbuf[0] = '\0';
}

void httpc_call_free(struct httpc_call *call) {
    httpc_call_drop_request(call);
    free(call->user_agent);
    free(call->effective_url);
    free(call->body);
    free(call->hdrs);
    free(call->content_type);
    free(call);
}

/* ---- response callbacks ------------------------------------------------- */

static bool reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    char *p = realloc(*buf, n);
    if (!p)
        return false;
    *buf = p;
    *cap = n;
    return true;
}

static void fail_too_big(struct httpc_call *call) {
    call->error = GTM_ETOOBIG;
    snprintf(call->why, sizeof(call->why), "response body larger than %zu bytes",
             call->max_response);
}

static void fail_no_memory(struct httpc_call *call) {
    call->error = GTM_EIO;
    snprintf(call->why, sizeof(call->why), "out of memory");
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    struct httpc_call *call = userp;
    size_t n = size * nmemb;
    if (n > call->max_response - call->body_len) {
        fail_too_big(call);
        return 0; /* aborts the transfer */
    }
    if (!reserve(&call->body, &call->body_cap, call->body_len + n + 1)) {
        fail_no_memory(call);
        return 0;
    }
    memcpy(call->body + call->body_len, data, n);
    call->body_len += n;
    return n;
}

static bool is_ows(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Keeps the headers of the last block (1xx blocks are dropped) and refuses a
 * body whose announced length exceeds the cap. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *userp) {
    struct httpc_call *call = userp;
    size_t n = size * nmemb, len = n;
    while (len && is_ows(line[len - 1]))
        len--;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        call->hdrs_len = 0;
        const char *sp = memchr(line, ' ', len);
        call->block_status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line || is_ows(line[0]))
        return n; /* blank line, obsolete folding or junk */

    size_t name_len = (size_t)(colon - line);
    const char *value = colon + 1;
    while (value < line + len && is_ows(*value))
        value++;
    size_t value_len = (size_t)(line + len - value);

    if (!reserve(&call->hdrs, &call->hdrs_cap, call->hdrs_len + name_len + value_len + 2)) {
        fail_no_memory(call);
        return 0;
    }
    char *stored = call->hdrs + call->hdrs_len;
    memcpy(stored, line, name_len);
    stored[name_len] = '\0';
    char *stored_value = stored + name_len + 1;
    memcpy(stored_value, value, value_len);
    stored_value[value_len] = '\0';
    call->hdrs_len += name_len + value_len + 2;

    bool has_body = !call->is_head && call->block_status >= 200 && call->block_status != 204 &&
                    call->block_status != 304;
    if (has_body && name_len == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        char *end;
        unsigned long long announced = strtoull(stored_value, &end, 10);
        if (end == stored_value)
            return n;
        if (announced > call->max_response) {
            fail_too_big(call);
            return 0;
        }
        /* A size hint only: encoded lengths differ, on_body enforces the cap. */
        if (!reserve(&call->body, &call->body_cap, (size_t)announced + 1)) {
            fail_no_memory(call);
            return 0;
        }
    }
    return n;
}

static const char *result_header(const struct gtm_http_result *res, const char *name) {
    if (!res || !name)
        return NULL;
    const struct httpc_call *call = HTTPC_CONTAINER(res, struct httpc_call, result);
    const char *p = call->hdrs, *end = call->hdrs + call->hdrs_len;
    while (p && p < end) {
        const char *value = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

/* ---- the address check ------------------------------------------------- */

static void format_address(const struct sockaddr *sa, char *out, size_t len) {
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, len, "[%s]:%u", host, port);
    } else {
        snprintf(out, len, "an address of family %d", sa->sa_family);
    }
}

/* curl asks here for every socket it connects with, after name resolution
 * and before connect(2): the one place every hop and every address passes. */
static curl_socket_t open_checked_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address) {
    struct httpc_call *call = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN || !call->address_allowed(call->address_arg, &address->addr)) {
        char where[INET6_ADDRSTRLEN + 16];
        format_address(&address->addr, where, sizeof(where));
        snprintf(call->refused_why, sizeof(call->refused_why), "connection to %s refused by the address check",
                 where);
        call->addresses_refused++;
        call->last_open_refused = true;
        return CURL_SOCKET_BAD;
    }
    call->last_open_refused = false;
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* ---- the easy handle ---------------------------------------------------- */

bool httpc_call_configure(struct httpc_call *call, CURL *easy, const struct httpc_request *req) {
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                              \
    do {                                           \
        if (rc == CURLE_OK)                        \
            rc = curl_easy_setopt(easy, opt, val); \
    } while (0)
    SET(CURLOPT_PRIVATE, call);
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, req->timeout_ms < HTTPC_MAX_CONNECT_TIMEOUT_MS
                                       ? req->timeout_ms
                                       : HTTPC_MAX_CONNECT_TIMEOUT_MS);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, call);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, call);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    if (call->req_headers)
        SET(CURLOPT_HTTPHEADER, call->req_headers);
    if (call->user_agent)
        SET(CURLOPT_USERAGENT, call->user_agent);
    if (call->address_allowed) {
        SET(CURLOPT_OPENSOCKETFUNCTION, open_checked_socket);
        SET(CURLOPT_OPENSOCKETDATA, call);
        /* A pooled connection was opened without this check (or with another
         * one), and a proxy would be the only address checked. */
        SET(CURLOPT_FRESH_CONNECT, 1L);
        SET(CURLOPT_FORBID_REUSE, 1L);
        SET(CURLOPT_PROXY, "");
    }

    const char *method = req->method;
    bool is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
    if (call->is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (req->body_len || is_post || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        /* POSTFIELDS even when empty, so the server sees Content-Length: 0. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_POSTFIELDS, call->req_body ? call->req_body : "");
    }
    if (!is_get && !is_post && !call->is_head)
        SET(CURLOPT_CUSTOMREQUEST, method);
    else if (is_get && req->body_len)
        SET(CURLOPT_CUSTOMREQUEST, "GET");
#undef SET
    return rc == CURLE_OK;
}

/* ---- the result --------------------------------------------------------- */

void httpc_call_read_info(struct httpc_call *call) {
    long status = 0;
    curl_off_t total_us = 0;
    char *ctype = NULL;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    if (curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype)
        call->content_type = strdup(ctype);
    char *url = NULL;
    if (curl_easy_getinfo(call->easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url)
        call->effective_url = strdup(url);
    call->result.status = status;
    call->result.total_ms = (double)total_us / 1000.0;
    call->result.content_type = call->content_type;
}

static void set_error_text(struct httpc_call *call, const char *text) {
    snprintf(call->errbuf, sizeof(call->errbuf), "%s", text);
}

void httpc_call_complete(struct httpc_call *call, CURLcode rc, int forced_error) {
    int error = forced_error;
    if (!error && rc != CURLE_OK) {
        if (call->error) /* our callback aborted the transfer */
            error = call->error;
        else if (rc == CURLE_COULDNT_CONNECT && call->last_open_refused)
            error = HTTPC_EBLOCKED;
        else if (rc == CURLE_OPERATION_TIMEDOUT)
            error = GTM_ETIMEDOUT;
        else if (rc == CURLE_COULDNT_CONNECT)
            error = GTM_ECONNREFUSED;
        else
            error = GTM_EIO;
    }
    struct gtm_http_result *res = &call->result;
    res->error = error;
    if (error) {
        if (error == HTTPC_EBLOCKED && !forced_error)
            set_error_text(call, call->refused_why);
        else if (call->why[0])
            set_error_text(call, call->why);
        else if (!call->errbuf[0])
            set_error_text(call, curl_easy_strerror(rc));
        res->error_text = call->errbuf;
        return; /* a partial or oversized body is of no use to the caller */
    }
    if (call->body) {
        call->body[call->body_len] = '\0';
        res->body = call->body;
        res->body_len = call->body_len;
    }
}

void httpc_call_cancelled(struct httpc_call *call, const char *why) {
    call->hdrs_len = 0; /* a half-received header block means nothing */
    set_error_text(call, why);
    call->result.error = GTM_ECANCELED;
    call->result.error_text = call->errbuf;
    call->result.total_ms = (double)(uv_hrtime() - call->started_ns) / 1e6;
}
