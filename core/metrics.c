#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util/buf.h"

#define METRIC_BUCKETS 12
static const double bucket_le[METRIC_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1.0,  2.5,   10.0};

struct status_count {
    struct status_count *next;
    char method[12];
    int status;
    uint64_t count;
};

/* One route pattern: its counts and its latency histogram. */
struct route_metrics {
    struct route_metrics *next;
    char *route;
    struct status_count *counts;
    uint64_t buckets[METRIC_BUCKETS];
    uint64_t observations;
    double seconds;
    uint64_t rate_limit_refusals;
};

struct metrics {
    struct route_metrics *routes;
};

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    if (!m) {
        return;
    }
    while (m->routes) {
        struct route_metrics *r = m->routes;
        m->routes = r->next;
        while (r->counts) {
            struct status_count *c = r->counts;
            r->counts = c->next;
            free(c);
        }
        free(r->route);
        free(r);
    }
    free(m);
}

static struct route_metrics *route_of(struct metrics *m, const char *route)
{
    for (struct route_metrics *r = m->routes; r; r = r->next) {
        if (strcmp(r->route, route) == 0) {
            return r;
        }
    }
    struct route_metrics *r = calloc(1, sizeof *r);
    if (!r || !(r->route = strdup(route))) {
        free(r);
        return NULL;
    }
    r->next = m->routes;
    m->routes = r;
    return r;
}

void metrics_observe(struct metrics *m, const char *route, const char *method, int status, double seconds,
                     int rate_limited)
{
    if (!m) {
        return;
    }
    struct route_metrics *r = route_of(m, route);
    if (!r) {
        return;
    }
    struct status_count *c = r->counts;
    while (c && (c->status != status || strcmp(c->method, method) != 0)) {
        c = c->next;
    }
    if (!c && (c = calloc(1, sizeof *c))) {
        snprintf(c->method, sizeof c->method, "%s", method);
        c->status = status;
        c->next = r->counts;
        r->counts = c;
    }
    if (c) {
        c->count++;
    }
    for (int i = 0; i < METRIC_BUCKETS; i++) {
        if (seconds <= bucket_le[i]) {
            r->buckets[i]++;
        }
    }
    r->observations++;
    r->seconds += seconds;
    if (rate_limited && status == 429) {
        r->rate_limit_refusals++;
    }
}

/* A label value: quotes, backslashes and newlines escaped. */
static void put_label(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') {
            buf_append(out, "\\", 1);
            buf_append(out, v, 1);
        } else if (*v == '\n') {
            buf_append(out, "\\n", 2);
        } else {
            buf_append(out, v, 1);
        }
    }
}

void metrics_write(const struct metrics *m, struct buf *out)
{
    buf_printf(out, "# HELP gtm_http_requests_total Requests answered, by route pattern, method and status.\n"
                    "# TYPE gtm_http_requests_total counter\n");
    for (const struct route_metrics *r = m->routes; r; r = r->next) {
        for (const struct status_count *c = r->counts; c; c = c->next) {
            buf_printf(out, "gtm_http_requests_total{route=\"");
            put_label(out, r->route);
            buf_printf(out, "\",method=\"%s\",status=\"%d\"} %llu\n", c->method, c->status,
                       (unsigned long long)c->count);
        }
    }
    buf_printf(out, "# HELP gtm_http_request_duration_seconds Time from a request's first byte to its answer.\n"
                    "# TYPE gtm_http_request_duration_seconds histogram\n");
    for (const struct route_metrics *r = m->routes; r; r = r->next) {
        for (int i = 0; i < METRIC_BUCKETS; i++) {
            buf_printf(out, "gtm_http_request_duration_seconds_bucket{route=\"");
            put_label(out, r->route);
            buf_printf(out, "\",le=\"%g\"} %llu\n", bucket_le[i], (unsigned long long)r->buckets[i]);
        }
        buf_printf(out, "gtm_http_request_duration_seconds_bucket{route=\"");
        put_label(out, r->route);
        buf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)r->observations);
        buf_printf(out, "gtm_http_request_duration_seconds_sum{route=\"");
        put_label(out, r->route);
        buf_printf(out, "\"} %.6f\n", r->seconds);
        buf_printf(out, "gtm_http_request_duration_seconds_count{route=\"");
        put_label(out, r->route);
        buf_printf(out, "\"} %llu\n", (unsigned long long)r->observations);
    }
    buf_printf(out, "# HELP gtm_ratelimit_refusals_total Requests refused with 429 by the rate limiter.\n"
                    "# TYPE gtm_ratelimit_refusals_total counter\n");
    for (const struct route_metrics *r = m->routes; r; r = r->next) {
        if (r->rate_limit_refusals) {
            buf_printf(out, "gtm_ratelimit_refusals_total{route=\"");
            put_label(out, r->route);
            buf_printf(out, "\"} %llu\n", (unsigned long long)r->rate_limit_refusals);
        }
    }
}
