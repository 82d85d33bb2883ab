/* One page's content for generation: the cache, then Firecrawl, then the
 * built-in fetcher, then the text written back to the cache.
 *
 * Each op runs one stage at a time (a pg op or an httpc call in flight).
 * The stages' callbacks come from the loop, never from inside site_*; an
 * op's outcome goes to the ready queue and done runs from the idle handle,
 * so done is never re-entrant and may call anything here, site_close
 * included.  The op's deadline is split: the cache gets at most a couple of
 * seconds, Firecrawl two thirds of what is left, the fetcher the rest.  The
 * cache never fails a fetch: its errors are logged and the op carries on. */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch/httpc.h"
#include "gtm/module.h"
#include "gtm_paths.h"
#include "log.h"
#include "pg/pg.h"
#include "site/site.h"
#include "site/site_internal.h"

#define SITE_DEFAULT_DEADLINE_MS 30000u
#define SITE_CACHE_MAX_MS 2000u      /* a slow database must not eat the fetch's time */
#define SITE_CACHE_WRITE_MIN_MS 50u  /* below this the write is skipped */
#define SITE_FALLBACK_MIN_MS 1000u   /* kept back from Firecrawl for the fetcher */
#define SITE_FIRECRAWL_MIN_MS 500u   /* less than this and Firecrawl is skipped */
#define SITE_DEFAULT_MAX_CHARS 20000
#define SITE_DEFAULT_MAX_BYTES (5u * 1024 * 1024)
#define SITE_DEFAULT_FIRECRAWL_BASE "https://api.firecrawl.dev"
#define SITE_LOG_MODULE "site"

static const char cache_read_sql[] =
    "SELECT content, url FROM gtm_scrape_cache"
    " WHERE key = encode(sha256(convert_to($1, 'UTF8')), 'hex')"
    " AND fetched_at > gtm_utcnow() - $2::int * interval '1 hour'";

/* The upsert, then a bounded sweep of expired rows (the fetched_at index
 * makes it cheap; SKIP LOCKED keeps concurrent writers from waiting). */
static const char cache_write_sql[] =
    "INSERT INTO gtm_scrape_cache (key, url, content, source, fetched_at)"
    " VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), $2, $3, $4, gtm_utcnow())"
    " ON CONFLICT (key) DO UPDATE SET url = EXCLUDED.url, content = EXCLUDED.content,"
    " source = EXCLUDED.source, fetched_at = EXCLUDED.fetched_at";
static const char cache_sweep_sql[] =
    "DELETE FROM gtm_scrape_cache WHERE key IN (SELECT key FROM gtm_scrape_cache"
    " WHERE fetched_at < gtm_utcnow() - $1::int * interval '1 hour'"
    " ORDER BY fetched_at LIMIT 100 FOR UPDATE SKIP LOCKED)";

enum op_stage { STAGE_CACHE_READ, STAGE_FIRECRAWL, STAGE_FETCH, STAGE_CACHE_WRITE, STAGE_READY };

/* Pages read in the last minute, per worker: a site asked about again and
 * again (a campaign for one company) costs no cache query each time. */
#define SITE_MEMO_SLOTS 64
#define SITE_MEMO_MS 60000

struct site_memo {
    char *canonical;
    char *text;
    size_t len;
    char *final_url;
    uint64_t stored;    /* loop time, ms */
};

struct site {
    uv_loop_t *loop;
    struct site_memo memo[SITE_MEMO_SLOTS];
    struct httpc *httpc;
    struct pg_pool *pg;
    struct site_config cfg;
    char user_agent[64];
    uv_idle_t kick;
    bool closing;
    struct site_op *ops; /* every op whose done has not run */
    struct site_op *ready_head, *ready_tail;
};

struct site_op {
    struct site *site;
    struct site_op *prev, *next; /* site->ops */
    struct site_op *ready_next;
    enum op_stage stage;
    struct httpc_call *http; /* in flight */
    struct pg_op *pg;        /* in flight */
    bool canceled;
    uint64_t deadline; /* loop time, ms */
    site_done_fn done;
    void *arg;
    char *url;       /* normalised: what is fetched */
    char *canonical; /* the cache key's source */
    char *final_url; /* after redirects, or as cached */
    char *text;
    size_t len;
    const char *source;
    int status;
    char message[512];
};

static void run_stage(struct site_op *op, enum op_stage stage);

/* ---- delivery -------------------------------------------------------------- */

static void op_free(struct site_op *op) {
    free(op->url);
    free(op->canonical);
    free(op->final_url);
    free(op->text);
    free(op);
}

static void memo_clear(struct site_memo *m);

static void on_kick_closed(uv_handle_t *h) {
    struct site *s = h->data; /* nothing refers to it any more */
    for (size_t i = 0; i < SITE_MEMO_SLOTS; i++)
        memo_clear(&s->memo[i]);
    free(s);
}

static void close_if_idle(struct site *s) {
    if (s->closing && !s->ops && !uv_is_closing((uv_handle_t *)&s->kick)) {
        uv_idle_stop(&s->kick);
        uv_close((uv_handle_t *)&s->kick, on_kick_closed);
    }
}

static void deliver_ready(uv_idle_t *h) {
    struct site *s = h->data;
    struct site_op *op;
    while ((op = s->ready_head)) {
        s->ready_head = op->ready_next;
        if (!s->ready_head)
            s->ready_tail = NULL;
        if (op->prev)
            op->prev->next = op->next;
        else
            s->ops = op->next;
        if (op->next)
            op->next->prev = op->prev;
        struct site_result res = {
            .status = op->status,
            .text = op->status == SITE_OK && op->text ? op->text : "",
            .len = op->status == SITE_OK ? op->len : 0,
            .source = op->source ? op->source : "",
            .url = op->final_url ? op->final_url : op->url ? op->url : "",
            .message = op->message,
        };
        op->done(op->arg, &res);
        op_free(op);
    }
    uv_idle_stop(h);
    close_if_idle(s);
}

/* The op's outcome is settled: done runs on a later loop turn. */
static void finish(struct site_op *op, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(struct site_op *op, int status, const char *fmt, ...) {
    struct site *s = op->site;
    op->stage = STAGE_READY;
    op->status = op->canceled ? SITE_ECANCELED : status;
    if (op->canceled) {
        snprintf(op->message, sizeof(op->message), "cancelled");
    } else if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op->message, sizeof(op->message), fmt, ap);
        va_end(ap);
    } else {
        op->message[0] = '\0';
    }
    for (char *p = op->message; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' '; /* one line, whatever the server said */
    op->ready_next = NULL;
    if (s->ready_tail)
        s->ready_tail->ready_next = op;
    else
        s->ready_head = op;
    s->ready_tail = op;
    uv_idle_start(&s->kick, deliver_ready);
}

static uint64_t remaining_ms(const struct site_op *op) {
    uint64_t now = uv_now(op->site->loop);
    return op->deadline > now ? op->deadline - now : 0;
}

static bool cache_enabled(const struct site *s) {
    return s->pg && s->cfg.cache_ttl_hours > 0;
}

/* Keeps at most max code points of a cached text (the cap may have shrunk). */
static size_t utf8_cap(const char *text, size_t len, size_t max) {
    size_t i = 0;
    while (i < len && max) {
        i++;
        while (i < len && ((unsigned char)text[i] & 0xc0) == 0x80)
            i++;
        max--;
    }
    return i;
}

/* ---- the memo of recent pages -------------------------------------------------- */

static struct site_memo *memo_slot(struct site *s, const char *canonical) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)canonical; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return &s->memo[h % SITE_MEMO_SLOTS];
}

static void memo_clear(struct site_memo *m) {
    free(m->canonical);
    free(m->text);
    free(m->final_url);
    memset(m, 0, sizeof(*m));
}

/* Remembers op's text (a copy) under its canonical URL. */
static void memo_put(struct site_op *op) {
    struct site_memo *m = memo_slot(op->site, op->canonical);
    memo_clear(m);
    m->canonical = strdup(op->canonical);
    m->text = strndup(op->text, op->len);
    m->final_url = op->final_url ? strdup(op->final_url) : NULL;
    if (!m->canonical || !m->text) {
        memo_clear(m);
        return;
    }
    m->len = op->len;
    m->stored = uv_now(op->site->loop);
}

/* 1 when a recent copy answered op. */
static int memo_get(struct site_op *op) {
    struct site_memo *m = memo_slot(op->site, op->canonical);
    if (!m->canonical || strcmp(m->canonical, op->canonical) != 0 ||
        uv_now(op->site->loop) - m->stored > SITE_MEMO_MS)
        return 0;
    size_t len = utf8_cap(m->text, m->len, op->site->cfg.max_chars);
    op->text = strndup(m->text, len);
    if (!op->text)
        return 0;
    op->len = len;
    if (m->final_url)
        op->final_url = strdup(m->final_url);
    op->source = "cache";
    finish(op, SITE_OK, NULL);
    return 1;
}

/* ---- the cache --------------------------------------------------------------- */

static void on_cache_read(void *arg, const struct pg_result *res) {
    struct site_op *op = arg;
    op->pg = NULL;
    if (op->canceled) {
        finish(op, SITE_ECANCELED, NULL);
        return;
    }
    int status = pg_result_status(res);
    if (status != PG_OK) {
        log_msg(LOG_WARN, NULL, SITE_LOG_MODULE, "scrape cache read failed, fetching instead: %s",
                pg_result_message(res));
    } else if (pg_result_ntuples(res, 0) > 0 && pg_result_length(res, 0, 0, 0) > 0) {
        const char *content = pg_result_value(res, 0, 0, 0);
        size_t len = utf8_cap(content, (size_t)pg_result_length(res, 0, 0, 0), op->site->cfg.max_chars);
        op->text = strndup(content, len);
        const char *url = pg_result_value(res, 0, 0, 1);
        if (url[0])
            op->final_url = strdup(url);
        if (op->text) {
            op->len = len;
            op->source = "cache";
            memo_put(op);
            finish(op, SITE_OK, NULL);
            return;
        }
    }
    run_stage(op, op->site->cfg.firecrawl_key[0] ? STAGE_FIRECRAWL : STAGE_FETCH);
}

static void start_cache_read(struct site_op *op) {
    struct site *s = op->site;
    uint64_t left = remaining_ms(op);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%u", s->cfg.cache_ttl_hours);
    const char *params[] = {op->canonical, ttl};
    struct pg_stmt stmt = {.sql = cache_read_sql, .nparams = 2, .params = params};
    unsigned timeout = (unsigned)(left < SITE_CACHE_MAX_MS ? left : SITE_CACHE_MAX_MS);
    int rc = timeout ? pg_pool_query(s->pg, &stmt, timeout, on_cache_read, op, &op->pg) : PG_ETIMEDOUT;
    if (rc != 0) {
        op->pg = NULL;
        log_msg(LOG_WARN, NULL, SITE_LOG_MODULE, "scrape cache read not started (%d), fetching instead", rc);
        run_stage(op, s->cfg.firecrawl_key[0] ? STAGE_FIRECRAWL : STAGE_FETCH);
    }
}

static void on_cache_written(void *arg, const struct pg_result *res) {
    struct site_op *op = arg;
    op->pg = NULL;
    if (pg_result_status(res) != PG_OK && !op->canceled)
        log_msg(LOG_WARN, NULL, SITE_LOG_MODULE, "scrape cache write failed (the page is served anyway): %s",
                pg_result_message(res));
    finish(op, SITE_OK, NULL);
}

static void start_cache_write(struct site_op *op) {
    struct site *s = op->site;
    uint64_t left = remaining_ms(op);
    if (left < SITE_CACHE_WRITE_MIN_MS) {
        finish(op, SITE_OK, NULL);
        return;
    }
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%u", s->cfg.cache_ttl_hours);
    const char *write_params[] = {op->canonical, op->final_url ? op->final_url : op->url, op->text, op->source};
    const char *sweep_params[] = {ttl};
    struct pg_stmt stmts[] = {
        {.sql = cache_write_sql, .nparams = 4, .params = write_params},
        {.sql = cache_sweep_sql, .nparams = 1, .params = sweep_params},
    };
    unsigned timeout = (unsigned)(left < SITE_CACHE_MAX_MS ? left : SITE_CACHE_MAX_MS);
    int rc = pg_pool_tx(s->pg, stmts, 2, timeout, on_cache_written, op, &op->pg);
    if (rc != 0) {
        op->pg = NULL;
        log_msg(LOG_WARN, NULL, SITE_LOG_MODULE, "scrape cache write not started (%d)", rc);
        finish(op, SITE_OK, NULL);
    }
}

/* A text is in hand: store it (when there is a cache), then deliver it. */
static void got_text(struct site_op *op, char *text, size_t len, const char *source) {
    op->text = text;
    op->len = len;
    op->source = source;
    if (cache_enabled(op->site)) {
        memo_put(op);
        run_stage(op, STAGE_CACHE_WRITE);
    } else {
        finish(op, SITE_OK, NULL);
    }
}

/* ---- Firecrawl ------------------------------------------------------------- */

/* Firecrawl failed: say so in the log and let the fetcher try. */
static void firecrawl_failed(struct site_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void firecrawl_failed(struct site_op *op, const char *fmt, ...) {
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_msg(LOG_WARN, NULL, SITE_LOG_MODULE, "firecrawl failed for %s, fetching directly: %s", op->url, why);
    run_stage(op, STAGE_FETCH);
}

static void on_firecrawl(void *arg, const struct gtm_http_result *res) {
    struct site_op *op = arg;
    op->http = NULL;
    if (op->canceled || res->error == GTM_ECANCELED) {
        finish(op, SITE_ECANCELED, "cancelled");
        return;
    }
    if (res->error) {
        firecrawl_failed(op, "%s", res->error_text ? res->error_text : "transport error");
        return;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(res->body, res->body_len, 0, &jerr);
    if (res->status != 200) {
        const char *msg = json_string_value(json_object_get(doc, "error"));
        firecrawl_failed(op, "HTTP %ld%s%.120s", res->status, msg ? ": " : "", msg ? msg : "");
        json_decref(doc);
        return;
    }
    json_t *data = json_object_get(doc, "data");
    json_t *markdown = json_object_get(data, "markdown");
    if (!doc || !json_is_true(json_object_get(doc, "success")) || !json_is_string(markdown)) {
        firecrawl_failed(op, "answer without success and data.markdown");
        json_decref(doc);
        return;
    }
    size_t len = 0;
    char *text = site_markdown_to_text(json_string_value(markdown), json_string_length(markdown),
                                       op->site->cfg.max_chars, &len);
    json_decref(doc);
    if (!text) {
        firecrawl_failed(op, "out of memory");
        return;
    }
    if (!len) {
        free(text);
        firecrawl_failed(op, "no text in the page");
        return;
    }
    got_text(op, text, len, "firecrawl");
}

static void start_firecrawl(struct site_op *op) {
    struct site *s = op->site;
    uint64_t left = remaining_ms(op);
    uint64_t reserve = left / 3 > SITE_FALLBACK_MIN_MS ? left / 3 : SITE_FALLBACK_MIN_MS;
    uint64_t budget = left > reserve ? left - reserve : 0;
    if (budget < SITE_FIRECRAWL_MIN_MS) {
        firecrawl_failed(op, "only %" PRIu64 " ms left, not enough for Firecrawl", left);
        return;
    }
    char url[sizeof(s->cfg.firecrawl_base) + 16];
    snprintf(url, sizeof(url), "%s/v1/scrape", s->cfg.firecrawl_base);
    char auth[sizeof(s->cfg.firecrawl_key) + 32];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", s->cfg.firecrawl_key);
    const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json", NULL};
    json_t *body = json_pack("{s:s, s:[s], s:b}", "url", op->url, "formats", "markdown", "onlyMainContent", 1);
    char *body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!body_text) {
        firecrawl_failed(op, "out of memory");
        return;
    }
    struct gtm_http_call call = {
        .size = sizeof(call),
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body_text,
        .body_len = strlen(body_text),
        .timeout_ms = (long)budget,
    };
    int rc = httpc_start(s->httpc, &call, on_firecrawl, op, &op->http);
    free(body_text); /* copied by httpc_start */
    if (rc != 0) {
        op->http = NULL;
        firecrawl_failed(op, "call not started (%d)", rc);
    }
}

/* ---- the built-in fetcher ------------------------------------------------------ */

static int guard(void *arg, const struct sockaddr *sa) {
    const struct site *s = arg;
    return site_address_allowed(&s->cfg, sa);
}

enum body_kind { BODY_REFUSED, BODY_HTML, BODY_TEXT };

/* What the Content-Type says; a missing one is read as HTML (the parser
 * copes with anything). */
static enum body_kind body_kind(const char *content_type) {
    if (!content_type)
        return BODY_HTML;
    size_t len = strcspn(content_type, ";");
    while (len && (content_type[len - 1] == ' ' || content_type[len - 1] == '\t'))
        len--;
    while (len && (*content_type == ' ' || *content_type == '\t')) {
        content_type++;
        len--;
    }
    if ((len == 9 && strncasecmp(content_type, "text/html", 9) == 0) ||
        (len == 21 && strncasecmp(content_type, "application/xhtml+xml", 21) == 0))
        return BODY_HTML;
    if (len == 10 && strncasecmp(content_type, "text/plain", 10) == 0)
        return BODY_TEXT;
    return BODY_REFUSED;
}

static void on_fetched(void *arg, const struct gtm_http_result *res) {
    struct site_op *op = arg;
    struct site *s = op->site;
    op->http = NULL;
    const char *last_url = httpc_result_url(res);
    if (last_url && last_url[0]) {
        free(op->final_url);
        op->final_url = strdup(last_url);
    }
    if (op->canceled || res->error == GTM_ECANCELED) {
        finish(op, SITE_ECANCELED, "cancelled");
        return;
    }
    const char *why = res->error_text ? res->error_text : "";
    switch (res->error) {
    case 0:
        break;
    case HTTPC_EBLOCKED:
        finish(op, SITE_EBLOCKED, "%s", why);
        return;
    case GTM_EINVAL:
        finish(op, SITE_EINVALID, "%s", why);
        return;
    case GTM_ETOOBIG:
        finish(op, SITE_EFETCH, "page larger than %zu bytes", s->cfg.max_bytes);
        return;
    case GTM_ETIMEDOUT:
        finish(op, SITE_EFETCH, "timed out: %s", why);
        return;
    default:
        finish(op, SITE_EFETCH, "%s", why[0] ? why : "fetch failed");
        return;
    }
    if (res->status < 200 || res->status > 299) {
        finish(op, SITE_EFETCH, "HTTP %ld from %s", res->status, op->final_url ? op->final_url : op->url);
        return;
    }
    enum body_kind kind = body_kind(res->content_type);
    if (kind == BODY_REFUSED) {
        finish(op, SITE_EFETCH, "content type %.80s is neither HTML nor plain text", res->content_type);
        return;
    }
    size_t len = 0;
    char *text = kind == BODY_HTML ? site_html_to_text(res->body, res->body_len, s->cfg.max_chars, &len)
                                   : site_plain_to_text(res->body, res->body_len, s->cfg.max_chars, &len);
    if (!text) {
        finish(op, SITE_EFETCH, "out of memory");
        return;
    }
    if (!len) {
        free(text);
        finish(op, SITE_EEMPTY, "no text in the page");
        return;
    }
    got_text(op, text, len, "fetch");
}

static void start_fetch(struct site_op *op) {
    struct site *s = op->site;
    uint64_t left = remaining_ms(op);
    if (!left) {
        finish(op, SITE_EFETCH, "deadline passed before the page could be fetched");
        return;
    }
    const char *headers[] = {"Accept: text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8", NULL};
    struct gtm_http_call call = {
        .size = sizeof(call),
        .method = "GET",
        .url = op->url,
        .headers = headers,
        .timeout_ms = (long)left,
        .max_response = s->cfg.max_bytes,
    };
    struct httpc_options opts = {
        .max_redirects = s->cfg.max_redirects,
        .user_agent = s->user_agent,
        .address_allowed = guard,
        .address_arg = s,
    };
    int rc = httpc_start_opts(s->httpc, &call, &opts, on_fetched, op, &op->http);
    if (rc != 0) {
        op->http = NULL;
        finish(op, rc == GTM_EINVAL ? SITE_EINVALID : SITE_EFETCH, "fetch not started (%d)", rc);
    }
}

static void run_stage(struct site_op *op, enum op_stage stage) {
    op->stage = stage;
    if (op->canceled) {
        finish(op, SITE_ECANCELED, NULL);
        return;
    }
    switch (stage) {
    case STAGE_CACHE_READ:
        start_cache_read(op);
        break;
    case STAGE_FIRECRAWL:
        start_firecrawl(op);
        break;
    case STAGE_FETCH:
        start_fetch(op);
        break;
    case STAGE_CACHE_WRITE:
        start_cache_write(op);
        break;
    case STAGE_READY:
        break;
    }
}

/* ---- public ---------------------------------------------------------------- */

struct site *site_new(uv_loop_t *loop, struct httpc *httpc, struct pg_pool *pg, const struct site_config *cfg) {
    if (!loop || !httpc || !cfg)
        return NULL;
    struct site *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = loop;
    s->httpc = httpc;
    s->pg = pg;
    s->cfg = *cfg;
    /* A zeroed field means the default, except max_redirects, where 0 means
     * "follow none". */
    if (!s->cfg.max_chars)
        s->cfg.max_chars = SITE_DEFAULT_MAX_CHARS;
    if (!s->cfg.max_bytes)
        s->cfg.max_bytes = SITE_DEFAULT_MAX_BYTES;
    if (!s->cfg.firecrawl_base[0])
        snprintf(s->cfg.firecrawl_base, sizeof(s->cfg.firecrawl_base), "%s", SITE_DEFAULT_FIRECRAWL_BASE);
    size_t base_len = strnlen(s->cfg.firecrawl_base, sizeof(s->cfg.firecrawl_base) - 1);
    while (base_len && s->cfg.firecrawl_base[base_len - 1] == '/')
        base_len--;
    s->cfg.firecrawl_base[base_len] = '\0';
    s->cfg.firecrawl_key[sizeof(s->cfg.firecrawl_key) - 1] = '\0';
    s->cfg.fetch_allow[sizeof(s->cfg.fetch_allow) - 1] = '\0';
    snprintf(s->user_agent, sizeof(s->user_agent), "gtmd/%s (website fetcher)", GTM_VERSION);
    uv_idle_init(loop, &s->kick); /* cannot fail on a live loop */
    s->kick.data = s;
    return s;
}

int site_fetch(struct site *s, const char *url, unsigned deadline_ms, site_done_fn done, void *arg,
               struct site_op **out) {
    if (out)
        *out = NULL;
    if (!s || !url || !done)
        return SITE_EINVALID;
    if (s->closing)
        return SITE_ECANCELED;
    struct site_op *op = calloc(1, sizeof(*op));
    if (!op)
        return SITE_EFETCH;
    op->site = s;
    op->done = done;
    op->arg = arg;
    op->deadline = uv_now(s->loop) + (deadline_ms ? deadline_ms : SITE_DEFAULT_DEADLINE_MS);
    op->next = s->ops;
    if (s->ops)
        s->ops->prev = op;
    s->ops = op;
    if (out)
        *out = op;

    size_t cap = strlen(url) + 16;
    op->url = malloc(cap);
    op->canonical = malloc(cap);
    if (!op->url || !op->canonical) {
        finish(op, SITE_EFETCH, "out of memory");
        return 0;
    }
    if (site_normalize_url(url, op->url, cap) < 0 || site_canonical_url(op->url, op->canonical, cap) < 0) {
        free(op->url);
        op->url = NULL;
        finish(op, SITE_EINVALID, "not a website URL: it needs http(s) and a host name with a dot");
        return 0;
    }
    if (cache_enabled(s)) {
        if (!memo_get(op))
            run_stage(op, STAGE_CACHE_READ);
    } else {
        run_stage(op, s->cfg.firecrawl_key[0] ? STAGE_FIRECRAWL : STAGE_FETCH);
    }
    return 0;
}

void site_cancel(struct site_op *op) {
    if (!op || op->canceled || op->stage == STAGE_READY)
        return; /* an op whose outcome is settled keeps it */
    op->canceled = true;
    /* The stage's callback runs later and settles the op as cancelled. */
    if (op->http)
        httpc_cancel(op->http);
    if (op->pg)
        pg_op_cancel(op->pg);
}

void site_close(struct site *s) {
    if (!s || s->closing)
        return;
    s->closing = true;
    for (struct site_op *op = s->ops; op; op = op->next)
        site_cancel(op);
    close_if_idle(s);
}
