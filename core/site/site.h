/* Website content for generation: Firecrawl v1 when FIRECRAWL_API_KEY is set;
 * otherwise, or when it fails, a built-in fetcher (http/https only, redirects
 * bounded, size capped, and an SSRF guard that refuses private, loopback,
 * link-local, unique-local, multicast and metadata addresses after DNS
 * resolution, on every hop, unless GTM_ALLOW_PRIVATE_FETCH=1 or the address
 * is in GTM_FETCH_ALLOW).  HTML becomes clean text through a real HTML5 parser
 * (gumbo), boilerplate removed, capped at MAX_CONTENT_LENGTH characters, and
 * cached in Postgres for WEB_CACHE_TTL_HOURS under the upstream's URL
 * canonicalisation. */
#ifndef GTM_SITE_H
#define GTM_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

struct httpc;
struct pg_pool;
struct site;
struct site_op;

struct site_config {
    char firecrawl_key[256];         /* FIRECRAWL_API_KEY, or empty */
    char firecrawl_base[512];        /* FIRECRAWL_BASE_URL, default https://api.firecrawl.dev */
    size_t max_chars;                /* MAX_CONTENT_LENGTH, default 20000 */
    unsigned cache_ttl_hours;        /* WEB_CACHE_TTL_HOURS, default 24; 0 disables the cache */
    bool allow_private;              /* GTM_ALLOW_PRIVATE_FETCH=1 */
    char fetch_allow[1024];          /* GTM_FETCH_ALLOW: "host:port,host:port" (IP literals or localhost) */
    size_t max_bytes;                /* largest page read, default 5 MiB */
    unsigned max_redirects;          /* default 5 */
};

/* 0, or -1 with a one-line reason naming the variable. */
int site_config_from_env(struct site_config *cfg, char *err, size_t errlen);

/* pg may be NULL (no cache). */
struct site *site_new(uv_loop_t *loop, struct httpc *httpc, struct pg_pool *pg, const struct site_config *cfg);

enum site_status {
    SITE_OK = 0,
    SITE_EINVALID = -1,      /* not a URL we fetch (scheme, host) */
    SITE_EBLOCKED = -2,      /* the SSRF guard refused an address */
    SITE_EFETCH = -3,        /* network error, HTTP error status, too large, timeout */
    SITE_EEMPTY = -4,        /* fetched, but no text in it */
    SITE_ECANCELED = -5,
};

struct site_result {
    int status;
    const char *text;                /* cleaned text, NUL-terminated, valid during the callback */
    size_t len;
    const char *source;              /* "cache", "firecrawl" or "fetch" */
    const char *url;                 /* the URL after normalisation (and redirects) */
    const char *message;             /* one line when status != SITE_OK */
};

typedef void (*site_done_fn)(void *arg, const struct site_result *res);

/* done runs exactly once, on the loop, never from inside this call.
 * Returns 0, or a negative site_status when the fetch could not start (NULL
 * url or done: SITE_EINVALID; site closing: SITE_ECANCELED; out of memory:
 * SITE_EFETCH), and done is then not called.  A URL that is not one we fetch
 * is answered through done (SITE_EINVALID).  deadline_ms 0 means 30 s. */
int site_fetch(struct site *s, const char *url, unsigned deadline_ms, site_done_fn done, void *arg,
               struct site_op **out);
/* done runs later with SITE_ECANCELED, unless the op's outcome was already
 * settled.  Never call it after done has run: the op is gone. */
void site_cancel(struct site_op *op);
/* Cancels every op (their done run later), then frees the site once the loop
 * has run.  Close it before the httpc client and the pool it uses. */
void site_close(struct site *s);

/* Pieces, exposed for tests. */
/* The upstream's normalisation before fetching: prepend http:// when there is
 * no scheme; require http/https, a host, and a dot in the host.  0 or -1. */
int site_normalize_url(const char *in, char *out, size_t outlen);
/* The upstream's cache key: lower-cased, https://, no :80/:443, "/" for an
 * empty path, no trailing slash, no query or fragment. */
int site_canonical_url(const char *in, char *out, size_t outlen);
/* 1 when the guard lets a connection to this address through. */
int site_address_allowed(const struct site_config *cfg, const struct sockaddr *sa);
/* HTML to clean text (malloc'd, NUL-terminated), at most max_chars characters. */
char *site_html_to_text(const char *html, size_t len, size_t max_chars, size_t *out_len);

#endif
