/* site_config_from_env: the fetcher's settings, each bad value reported as
 * one line naming its variable.  An empty variable counts as unset. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "site/site.h"
#include "site/site_internal.h"

#define SITE_DEFAULT_FIRECRAWL_BASE "https://api.firecrawl.dev"
#define SITE_DEFAULT_MAX_CHARS 20000
#define SITE_MAX_MAX_CHARS 10000000ul
#define SITE_DEFAULT_TTL_HOURS 24
#define SITE_MAX_TTL_HOURS 876000ul /* a century: anything longer is a typo */
#define SITE_DEFAULT_MAX_BYTES (5u * 1024 * 1024)
#define SITE_DEFAULT_MAX_REDIRECTS 5

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

/* Decimal digits only, 0..max. */
static int parse_count(const char *text, unsigned long max, unsigned long *out) {
    if (!text || text[0] < '0' || text[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static bool has_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

int site_config_from_env(struct site_config *cfg, char *err, size_t errlen) {
    if (!cfg)
        return -1;
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_chars = SITE_DEFAULT_MAX_CHARS;
    cfg->cache_ttl_hours = SITE_DEFAULT_TTL_HOURS;
    cfg->max_bytes = SITE_DEFAULT_MAX_BYTES;
    cfg->max_redirects = SITE_DEFAULT_MAX_REDIRECTS;
    snprintf(cfg->firecrawl_base, sizeof(cfg->firecrawl_base), "%s", SITE_DEFAULT_FIRECRAWL_BASE);

    const char *v = env("FIRECRAWL_API_KEY");
    if (v) {
        /* It goes into a header line: a newline would add headers of its own. */
        if (strlen(v) >= sizeof(cfg->firecrawl_key) || has_control(v) || strchr(v, ' ')) {
            snprintf(err, errlen, "FIRECRAWL_API_KEY: not a key (control characters, spaces or over %zu bytes)",
                     sizeof(cfg->firecrawl_key) - 1);
            return -1;
        }
        snprintf(cfg->firecrawl_key, sizeof(cfg->firecrawl_key), "%s", v);
    }

    v = env("FIRECRAWL_BASE_URL");
    if (v) {
        size_t len = strlen(v);
        while (len && v[len - 1] == '/')
            len--;
        bool web = strncasecmp(v, "http://", 7) == 0 || strncasecmp(v, "https://", 8) == 0;
        if (!web || len >= sizeof(cfg->firecrawl_base) || has_control(v) || strchr(v, ' ')) {
            snprintf(err, errlen, "FIRECRAWL_BASE_URL: \"%.80s\" is not an http(s) URL of at most %zu bytes", v,
                     sizeof(cfg->firecrawl_base) - 1);
            return -1;
        }
        snprintf(cfg->firecrawl_base, sizeof(cfg->firecrawl_base), "%.*s", (int)len, v);
    }

    unsigned long n;
    v = env("MAX_CONTENT_LENGTH");
    if (v) {
        if (parse_count(v, SITE_MAX_MAX_CHARS, &n) < 0 || n == 0) {
            snprintf(err, errlen, "MAX_CONTENT_LENGTH: \"%.40s\" is not a character count in 1..%lu", v,
                     SITE_MAX_MAX_CHARS);
            return -1;
        }
        cfg->max_chars = n;
    }

    v = env("WEB_CACHE_TTL_HOURS");
    if (v) {
        if (parse_count(v, SITE_MAX_TTL_HOURS, &n) < 0) {
            snprintf(err, errlen, "WEB_CACHE_TTL_HOURS: \"%.40s\" is not a number of hours in 0..%lu (0 disables the cache)",
                     v, SITE_MAX_TTL_HOURS);
            return -1;
        }
        cfg->cache_ttl_hours = (unsigned)n;
    }

    v = env("GTM_ALLOW_PRIVATE_FETCH");
    if (v) {
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
            snprintf(err, errlen, "GTM_ALLOW_PRIVATE_FETCH: \"%.40s\" is neither 0 nor 1", v);
            return -1;
        }
        cfg->allow_private = v[0] == '1';
    }

    v = env("GTM_FETCH_ALLOW");
    if (v) {
        char why[200];
        if (strlen(v) >= sizeof(cfg->fetch_allow)) {
            snprintf(err, errlen, "GTM_FETCH_ALLOW: longer than %zu bytes", sizeof(cfg->fetch_allow) - 1);
            return -1;
        }
        if (site_fetch_allow_check(v, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "GTM_FETCH_ALLOW: %s (want host:port,host:port with IP literals or localhost)",
                     why);
            return -1;
        }
        snprintf(cfg->fetch_allow, sizeof(cfg->fetch_allow), "%s", v);
    }
    return 0;
}
