/* ratelimit: the descriptor, settings and the admit hook.
 *
 * Every admitted request runs one transaction of two statements:
 *   1. claim: create the request's counter rows if missing and lock them all,
 *      in bucket order (so two requests sharing counters never deadlock);
 *   2. decide: with every row locked, read the counts (a row whose window has
 *      passed counts as zero), and add one to each only when every counter is
 *      under its limit.  A refused request therefore consumes nothing, and no
 *      number of workers or instances can admit more than a limit.
 * Admins are looked up in the same statements and never counted. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crud.h"
#include "ratelimit.h"

#define DEMO_PREFIX "demo:"
#define MAX_COUNTERS 3
#define MAX_ATTEMPTS 3   /* a deadlock or serialization failure is retried */
#define DECIDE_STMT 0

/* One round trip: sql/0006's gtm_rate_admit claims and locks the counters'
 * rows in key order, then checks and bumps them together.  Columns: admin,
 * tier, admitted, rows bumped, then per counter (in the order given, none for
 * an admin): position, limit, used before this request, reset as epoch
 * seconds (rounded up, so the window is over at that second) and seconds
 * until then. */
static const char admit_sql[] =
    "SELECT * FROM gtm_rate_admit($1::text[], $2::uuid, $3::text[], $4::int[], $5::int[], $6::int[], $7::int)";

/* Expired rows would be replaced on their next hit anyway; this keeps keys
 * that are never hit again (one-off IPs) from piling up. */
static const char sweep_sql[] =
    "DELETE FROM gtm_rate_counters WHERE bucket IN (SELECT bucket FROM gtm_rate_counters "
    "WHERE reset_at <= clock_timestamp() ORDER BY reset_at LIMIT 5000 FOR UPDATE SKIP LOCKED)";

enum rl_scope { SCOPE_USER, SCOPE_DEMO };

/* One admit in flight, in request memory. */
struct rl_call {
    struct ratelimit *rl;
    struct gtm_req *req;
    enum rl_scope scope;
    enum rl_endpoint endpoint;
    int attempts;
    size_t n_counters;
    const char *params[7];
    struct gtm_pg_stmt stmt;
};

/* One counter as the decide statement reports it. */
struct rl_counter {
    int64_t limit;
    int64_t used;
    int64_t reset_epoch;
    int64_t reset_in;
};

static int64_t parse_i64(const char *s)
{
    return strtoll(s, NULL, 10);
}

static void set_number_header(const struct gtm_host *h, struct gtm_req *req, const char *name, int64_t v)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, v);
    h->set_header(req, name, text);
}

static void fail_internal(struct rl_call *call)
{
    call->rl->host->respond_error(call->req, 500, "Internal server error");
    call->rl->host->hook_done(call->req, GTM_HOOK_DONE);
}

static void answer(struct rl_call *call, const struct gtm_pg_result *res)
{
    struct ratelimit *rl = call->rl;
    const struct gtm_host *h = rl->host;
    struct gtm_req *req = call->req;
    int rows = h->pg_ntuples(res, DECIDE_STMT);
    if (rows < 1) {
        h->log(rl->self, req, GTM_LOG_ERROR, "rate-limit statement returned no row");
        fail_internal(call);
        return;
    }
    if (strcmp(h->pg_value(res, DECIDE_STMT, 0, 0), "t") == 0) {
        h->set_header(req, "x-ratelimit-bypass", "admin");
        h->hook_done(req, GTM_HOOK_CONTINUE);
        return;
    }
    const char *tier = h->pg_value(res, DECIDE_STMT, 0, 1);
    bool admitted = strcmp(h->pg_value(res, DECIDE_STMT, 0, 2), "t") == 0;
    struct rl_counter counters[MAX_COUNTERS];
    if ((size_t)rows != call->n_counters || h->pg_isnull(res, DECIDE_STMT, 0, 4)) {
        /* rows the claim statement had just locked cannot vanish */
        h->log(rl->self, req, GTM_LOG_ERROR, "rate-limit counters missing (%d of %zu)", rows, call->n_counters);
        fail_internal(call);
        return;
    }
    for (int i = 0; i < rows; i++) {
        counters[i].limit = parse_i64(h->pg_value(res, DECIDE_STMT, i, 5));
        counters[i].used = parse_i64(h->pg_value(res, DECIDE_STMT, i, 6));
        counters[i].reset_epoch = parse_i64(h->pg_value(res, DECIDE_STMT, i, 7));
        counters[i].reset_in = parse_i64(h->pg_value(res, DECIDE_STMT, i, 8));
    }
    /* the endpoint's own counter comes first */
    set_number_header(h, req, "x-ratelimit-limit", counters[0].limit);
    if (admitted) {
        int64_t remaining = INT64_MAX, reset = INT64_MAX;
        for (int i = 0; i < rows; i++) {
            int64_t left = counters[i].limit - counters[i].used - 1;
            remaining = left < remaining ? left : remaining;
            reset = counters[i].reset_epoch < reset ? counters[i].reset_epoch : reset;
        }
        set_number_header(h, req, "x-ratelimit-remaining", remaining < 0 ? 0 : remaining);
        set_number_header(h, req, "x-ratelimit-reset", reset);
        if (call->scope == SCOPE_USER) {
            h->set_header(req, "x-ratelimit-tier", tier);
            h->set_header(req, "x-ratelimit-scope", "endpoint");
        }
        h->hook_done(req, GTM_HOOK_CONTINUE);
        return;
    }
    /* Refused: the reset that matters is when the exhausted counters free up
     * (the upstream gave the earliest of all, which could be before any retry
     * can succeed). */
    int64_t reset = 0, retry_after = 1;
    for (int i = 0; i < rows; i++) {
        if (counters[i].used >= counters[i].limit) {
            reset = counters[i].reset_epoch > reset ? counters[i].reset_epoch : reset;
            retry_after = counters[i].reset_in > retry_after ? counters[i].reset_in : retry_after;
        }
    }
    set_number_header(h, req, "retry-after", retry_after);
    set_number_header(h, req, "x-ratelimit-remaining", 0);
    set_number_header(h, req, "x-ratelimit-reset", reset);
    if (call->scope == SCOPE_USER) {
        char detail[128];
        h->set_header(req, "x-ratelimit-tier", tier);
        snprintf(detail, sizeof detail, "Rate limit exceeded for %s tier. Upgrade your plan for higher limits.", tier);
        h->respond_error(req, 429, detail);
    } else {
        h->respond_error(req, 429, "Rate limit exceeded for demo usage. Sign up for higher limits and API access.");
    }
    h->hook_done(req, GTM_HOOK_DONE);
}

static int submit(struct rl_call *call);

static void counted(void *arg, const struct gtm_pg_result *res)
{
    struct rl_call *call = arg;
    const struct gtm_host *h = call->rl->host;
    if (h->pg_status(res) == GTM_OK) {
        answer(call, res);
        return;
    }
    const char *state = h->pg_sqlstate(res);
    bool retryable = h->pg_status(res) == GTM_EQUERY && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0);
    if (retryable && call->attempts < MAX_ATTEMPTS && !h->req_gone(call->req)) {
        h->log(call->rl->self, call->req, GTM_LOG_WARN, "rate-limit decision retried: %s", h->pg_message(res));
        if (submit(call) == 0) {
            return;
        }
    }
    /* 503 (with Retry-After) when the database is away: never a free pass,
     * never a wait without end */
    h->respond_pg_error(call->req, res);
    h->hook_done(call->req, GTM_HOOK_DONE);
}

static int submit(struct rl_call *call)
{
    struct ratelimit *rl = call->rl;
    call->attempts++;
    return rl->host->pg_query(rl->self, call->req, &call->stmt, counted, call);
}

static void swept(void *arg, const struct gtm_pg_result *res)
{
    struct ratelimit *rl = arg;
    rl->sweeping = false;
    if (rl->host->pg_status(res) != GTM_OK) {
        rl->host->log(rl->self, NULL, GTM_LOG_WARN, "deleting expired rate-limit counters failed: %s",
                      rl->host->pg_message(res));
    } else if (rl->host->pg_affected(res, 0) > 0) {
        rl->host->log(rl->self, NULL, GTM_LOG_DEBUG, "deleted %ld expired rate-limit counters",
                      rl->host->pg_affected(res, 0));
    }
}

static void maybe_sweep(struct ratelimit *rl)
{
    int64_t now = rl->host->now_ms();
    if (rl->sweeping || now - rl->last_sweep_ms < (int64_t)rl->limits.sweep_s * 1000) {
        return;
    }
    rl->last_sweep_ms = now;
    struct gtm_pg_stmt stmt = {sweep_sql, 0, NULL};
    if (rl->host->pg_query(rl->self, NULL, &stmt, swept, rl) == 0) {
        rl->sweeping = true;
    }
}

/* Text in request memory, or NULL. */
static char *req_printf(const struct gtm_host *h, struct gtm_req *req, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static char *req_printf(const struct gtm_host *h, struct gtm_req *req, size_t cap, const char *fmt, ...)
{
    char *out = h->req_alloc(req, cap);
    if (!out) {
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap ? out : NULL;
}

/* The route's key: a user endpoint, or "demo:" and one.  -1 when unknown. */
static int parse_limit_key(const char *key, enum rl_scope *scope)
{
    if (!key) {
        return -1;
    }
    *scope = SCOPE_USER;
    if (strncmp(key, DEMO_PREFIX, strlen(DEMO_PREFIX)) == 0) {
        *scope = SCOPE_DEMO;
        key += strlen(DEMO_PREFIX);
    }
    for (int e = 0; e < RL_ENDPOINTS; e++) {
        if (strcmp(key, rl_endpoint_names[e]) == 0) {
            return e;
        }
    }
    return -1;
}

static int refuse_misconfigured(struct ratelimit *rl, struct gtm_req *req, const char *limit_key, const char *why)
{
    rl->host->log(rl->self, req, GTM_LOG_ERROR, "route %s %s: limit key '%s' %s", rl->host->req_method(req),
                  rl->host->req_path(req), limit_key ? limit_key : "(none)", why);
    rl->host->respond_error(req, 500, "Internal server error");
    return GTM_HOOK_DONE;
}

static int build_user_call(struct rl_call *call, const char *user)
{
    const struct gtm_host *h = call->rl->host;
    struct gtm_req *req = call->req;
    const struct rl_limits *l = &call->rl->limits;
    const char *name = rl_endpoint_names[call->endpoint];
    const struct rl_tier_limits *t = l->user;
    call->n_counters = 3;
    call->params[0] = req_printf(h, req, 256, "{\"u:%s:%s\",\"u:%s:day\",\"u:%s:month\"}", user, name, user, user);
    call->params[1] = user;
    call->params[2] = "{window,day,month}";
    for (int tier = 0; tier < RL_TIERS; tier++) {
        call->params[3 + tier] = req_printf(h, req, 48, "{%" PRId32 ",%" PRId32 ",%" PRId32 "}",
                                            t[tier].endpoint[call->endpoint], t[tier].daily, t[tier].monthly);
    }
    call->params[6] = req_printf(h, req, 16, "%" PRId32, l->window_s);
    return call->params[0] && call->params[3] && call->params[4] && call->params[5] && call->params[6] ? 0 : -1;
}

static int build_demo_call(struct rl_call *call)
{
    const struct gtm_host *h = call->rl->host;
    struct gtm_req *req = call->req;
    const struct rl_limits *l = &call->rl->limits;
    char ip[64];
    rl_client_ip(&call->rl->trusted, h->req_client_ip(req), h->req_header(req, "x-forwarded-for"), ip, sizeof ip);
    call->n_counters = 1;
    call->params[0] = req_printf(h, req, 128, "{\"d:%s:%s\"}", ip, rl_endpoint_names[call->endpoint]);
    call->params[1] = NULL;
    call->params[2] = "{window}";
    /* one limit whatever the tier: there is no user */
    call->params[3] = req_printf(h, req, 16, "{%" PRId32 "}", l->demo[call->endpoint]);
    call->params[4] = call->params[3];
    call->params[5] = call->params[3];
    call->params[6] = req_printf(h, req, 16, "%" PRId32, l->window_s);
    return call->params[0] && call->params[3] && call->params[6] ? 0 : -1;
}

static int rl_admit(void *state, struct gtm_req *req, const char *limit_key)
{
    struct ratelimit *rl = state;
    const struct gtm_host *h = rl->host;
    enum rl_scope scope;
    int endpoint = parse_limit_key(limit_key, &scope);
    if (endpoint < 0) {
        return refuse_misconfigured(rl, req, limit_key, "is not one this module knows");
    }
    const char *user = NULL;
    if (scope == SCOPE_USER) {
        user = h->req_user(req);
        if (!user || !crud_is_uuid(user)) {
            return refuse_misconfigured(rl, req, limit_key, "is per user, but the request has no user (GTM_ROUTE_AUTH?)");
        }
    }
    struct rl_call *call = h->req_alloc(req, sizeof *call);
    if (!call) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    memset(call, 0, sizeof *call);
    call->rl = rl;
    call->req = req;
    call->scope = scope;
    call->endpoint = (enum rl_endpoint)endpoint;
    int built = scope == SCOPE_USER ? build_user_call(call, user) : build_demo_call(call);
    if (built < 0) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    call->stmt = (struct gtm_pg_stmt){admit_sql, 7, call->params};
    maybe_sweep(rl);
    if (submit(call) != 0) {
        h->respond_error(req, 500, "Internal server error");
        return GTM_HOOK_DONE;
    }
    return GTM_HOOK_ASYNC;
}

static int is_development(const char *environment)
{
    /* the upstream's test: os.getenv("ENVIRONMENT", "development").lower() == "development" */
    if (!environment) {
        return 1;
    }
    return strcasecmp(environment, "development") == 0;
}

static int rl_init(const struct gtm_host *host, struct gtm_mod *self, void **state)
{
    if (!GTM_HOST_HAS(host, now_ms) || !GTM_HOST_HAS(host, pg_tx)) {
        return GTM_EINVAL;   /* needs ABI 1.1 */
    }
    struct ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) {
        return GTM_ENOMEM;
    }
    rl->host = host;
    rl->self = self;
    char why[512];
    rl_limits_defaults(&rl->limits, is_development(host->config("ENVIRONMENT")));
    const char *file = host->config("GTM_RATE_LIMITS_FILE");
    bool has_file = file && *file;
    if ((has_file && rl_limits_load_file(&rl->limits, file, why, sizeof why) < 0) ||
        rl_proxies_parse(host->config("GTM_TRUSTED_PROXIES"), &rl->trusted, why, sizeof why) < 0) {
        host->log(self, NULL, GTM_LOG_ERROR, "%s", why);
        free(rl);
        return GTM_EINVAL;
    }
    const char *db = host->config("DATABASE_URL");
    if (!db || !*db) {
        host->log(self, NULL, GTM_LOG_WARN, "DATABASE_URL is not set: rate-limited routes answer 503");
    }
    const struct rl_limits *l = &rl->limits;
    host->log(self, NULL, GTM_LOG_INFO,
              "rate limits: %s tables%s%s, %" PRId32 " s window; free tier %" PRId32 "/%" PRId32 "/%" PRId32
              "/%" PRId32 " per window, %" PRId32 "/day, %" PRId32 "/month; demo %" PRId32 "/%" PRId32 "/%" PRId32
              "/%" PRId32 " per IP; %zu trusted prox%s",
              l->development ? "development" : "production", has_file ? " with overrides from " : "",
              has_file ? file : "", l->window_s, l->user[RL_FREE].endpoint[RL_COMPANY],
              l->user[RL_FREE].endpoint[RL_ACCOUNT], l->user[RL_FREE].endpoint[RL_PERSONA],
              l->user[RL_FREE].endpoint[RL_CAMPAIGN], l->user[RL_FREE].daily, l->user[RL_FREE].monthly,
              l->demo[RL_COMPANY], l->demo[RL_ACCOUNT], l->demo[RL_PERSONA], l->demo[RL_CAMPAIGN], rl->trusted.n,
              rl->trusted.n == 1 ? "y" : "ies");
    rl->last_sweep_ms = host->now_ms();
    *state = rl;
    return 0;
}

static void rl_fini(void *state)
{
    struct ratelimit *rl = state;
    rl_proxies_free(&rl->trusted);
    free(rl);
}

static const struct gtm_module desc = {
    GTM_MODULE_STAMP,
    .name = "ratelimit",
    .version = GTM_MODULE_VERSION,
    .flags = GTM_MODULE_UNLOADABLE,
    .init = rl_init,
    .fini = rl_fini,
    .admit = rl_admit,
};

GTM_EXPORT const struct gtm_module *gtm_module_v1(void)
{
    return &desc;
}
