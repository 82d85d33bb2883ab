/* Request metrics per worker: counts by route pattern, method and status,
 * and a latency histogram per route pattern, for /metrics. */
#ifndef GTM_METRICS_H
#define GTM_METRICS_H

#include <stdint.h>

struct buf;
struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* route is the route's pattern, or a label like "(unmatched)". */
void metrics_observe(struct metrics *m, const char *route, const char *method, int status, double seconds,
                     int rate_limited);
/* Appends the request families in Prometheus text format. */
void metrics_write(const struct metrics *m, struct buf *out);

#endif
