/* The upstream's two URL rules (upstream-behaviour.md §6.5): the
 * normalisation applied before fetching, and the canonical form whose SHA-256
 * keys the cache.  Both are plain string work; libcurl's URL parser only
 * checks that the normalised result is a URL curl will fetch. */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "site/site.h"

static bool is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static bool is_alpha(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

static char lower(char ch) {
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Leading and trailing whitespace off: [*start, *start + *len). */
static void trim(const char *in, const char **start, size_t *len) {
    size_t n = strlen(in);
    while (n && is_space(in[n - 1]))
        n--;
    while (n && is_space(*in)) {
        in++;
        n--;
    }
    *start = in;
    *len = n;
}

/* Length of the scheme before ':' (RFC 3986 letters), or 0 when the text has
 * none.  "example.com:8080/x" looks like a scheme to a naive parser; a run of
 * digits after the colon is a port, so that has no scheme. */
static size_t scheme_length(const char *s, size_t len) {
    if (!len || !is_alpha(s[0]))
        return 0;
    size_t i = 1;
    while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= len || s[i] != ':')
        return 0;
    size_t j = i + 1;
    while (j < len && is_digit(s[j]))
        j++;
    bool port_follows = j > i + 1 && (j == len || s[j] == '/' || s[j] == '?' || s[j] == '#');
    return port_follows ? 0 : i;
}

/* The authority of a URL written scheme://authority/...: [start, end). */
static void authority_span(const char *url, size_t len, size_t *start, size_t *end) {
    const char *sep = strstr(url, "://");
    *start = sep ? (size_t)(sep - url) + 3 : 0;
    size_t i = *start;
    while (i < len && url[i] != '/' && url[i] != '?' && url[i] != '#' && url[i] != '\\')
        i++;
    *end = i;
}

int site_normalize_url(const char *in, char *out, size_t outlen) {
    if (!in || !out || !outlen)
        return -1;
    out[0] = '\0';
    const char *s;
    size_t len;
    trim(in, &s, &len);
    if (!len)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == ' ')
            return -1; /* curl would refuse or re-encode it: not what was asked for */
    }
    size_t scheme = scheme_length(s, len);
    const char *prefix = "";
    if (!scheme) {
        prefix = "http://";
    } else if (!((scheme == 4 && strncasecmp(s, "http", 4) == 0) ||
                 (scheme == 5 && strncasecmp(s, "https", 5) == 0))) {
        return -1;
    } else if (len < scheme + 3 || memcmp(s + scheme, "://", 3) != 0) {
        return -1; /* "http:example.com" has no netloc */
    }
    int n = snprintf(out, outlen, "%s%.*s", prefix, (int)len, s);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return -1;
    }

    size_t a_start, a_end;
    authority_span(out, (size_t)n, &a_start, &a_end);
    bool has_dot = memchr(out + a_start, '.', a_end - a_start) != NULL;
    CURLU *u = curl_url();
    char *host = NULL;
    bool parses = u && curl_url_set(u, CURLUPART_URL, out, 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && host[0];
    curl_free(host);
    curl_url_cleanup(u);
    if (a_end == a_start || !has_dot || !parses) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int site_canonical_url(const char *in, char *out, size_t outlen) {
    if (!in || !out || !outlen)
        return -1;
    out[0] = '\0';
    const char *s;
    size_t len;
    trim(in, &s, &len);
    if (!len)
        return -1;
    size_t scheme = scheme_length(s, len);
    if (scheme) {
        bool web = (scheme == 4 && strncasecmp(s, "http", 4) == 0) ||
                   (scheme == 5 && strncasecmp(s, "https", 5) == 0);
        if (!web || len < scheme + 3 || memcmp(s + scheme, "://", 3) != 0)
            return -1;
        s += scheme + 3;
        len -= scheme + 3;
    }

    /* netloc: up to the path, query or fragment */
    size_t netloc_end = 0;
    while (netloc_end < len && s[netloc_end] != '/' && s[netloc_end] != '?' && s[netloc_end] != '#')
        netloc_end++;
    size_t netloc_len = netloc_end;
    if (!netloc_len)
        return -1;
    /* The default ports of either scheme go: the key is always https. */
    if (netloc_len > 3 && memcmp(s + netloc_len - 3, ":80", 3) == 0 &&
        !is_digit(s[netloc_len - 4]))
        netloc_len -= 3;
    else if (netloc_len > 4 && memcmp(s + netloc_len - 4, ":443", 4) == 0 &&
             !is_digit(s[netloc_len - 5]))
        netloc_len -= 4;

    size_t path_start = netloc_end, path_end = netloc_end;
    while (path_end < len && s[path_end] != '?' && s[path_end] != '#')
        path_end++;
    size_t path_len = path_end - path_start;
    while (path_len > 1 && s[path_start + path_len - 1] == '/')
        path_len--;
    /* "//" reduces to "/" rather than to nothing. */
    bool empty_path = path_len == 0 || (path_len == 1 && s[path_start] == '/');

    size_t need = 8 + netloc_len + (empty_path ? 1 : path_len) + 1;
    if (need > outlen)
        return -1;
    size_t o = 0;
    memcpy(out, "https://", 8);
    o = 8;
    for (size_t i = 0; i < netloc_len; i++)
        out[o++] = lower(s[i]);
    if (empty_path) {
        out[o++] = '/';
    } else {
        for (size_t i = 0; i < path_len; i++)
            out[o++] = lower(s[path_start + i]);
    }
    out[o] = '\0';
    return 0;
}
