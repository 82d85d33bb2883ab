/* ratelimit: the admit hook.  Per-user limits for the generation routes
 * (hourly per endpoint, plus daily and monthly totals, by plan tier) and
 * per-client-IP limits for the demo routes, counted in Postgres so that every
 * worker and every gtmd instance on one database shares them. */
#ifndef GTM_RATELIMIT_H
#define GTM_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gtm/gtm.h"

enum rl_endpoint { RL_COMPANY, RL_ACCOUNT, RL_PERSONA, RL_CAMPAIGN, RL_ENDPOINTS };
enum rl_tier { RL_FREE, RL_PRO, RL_ENTERPRISE, RL_TIERS };

/* The names used in limit keys, headers and the override file. */
extern const char *const rl_endpoint_names[RL_ENDPOINTS];   /* "company_generate", ... */
extern const char *const rl_tier_names[RL_TIERS];           /* "free", "pro", "enterprise" */

#define RL_LIMIT_MAX 1000000000L
#define RL_WINDOW_MAX_S 86400L                 /* the "hourly" window may be set from 1 s to a day */
#define RL_DEFAULT_WINDOW_S 3600
#define RL_DEFAULT_SWEEP_S 600                 /* each worker deletes expired counters this often */

struct rl_tier_limits {
    int32_t endpoint[RL_ENDPOINTS];            /* per window */
    int32_t daily;                             /* per UTC calendar day, all endpoints together */
    int32_t monthly;                           /* per UTC calendar month */
};

struct rl_limits {
    bool development;                          /* ENVIRONMENT is development (or unset) */
    struct rl_tier_limits user[RL_TIERS];
    int32_t demo[RL_ENDPOINTS];                /* per client IP, per window */
    int32_t window_s;
    int32_t sweep_s;
};

/* An address as 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d). */
struct rl_addr {
    uint8_t b[16];
};

struct rl_net {
    struct rl_addr addr;
    unsigned prefix;                           /* 0..128, counted on the 16-byte form */
};

struct rl_proxies {
    struct rl_net *nets;
    size_t n;
};

struct ratelimit {
    const struct gtm_host *host;
    struct gtm_mod *self;
    struct rl_limits limits;
    struct rl_proxies trusted;
    int64_t last_sweep_ms;
    bool sweeping;
};

/* rl_config.c */
/* The built-in tables for the mode: the upstream's production tiers and demo
 * limits, or its development numbers. */
void rl_limits_defaults(struct rl_limits *l, bool development);
/* Applies the override file at path.  0, or -1 with a one-line reason
 * (naming the offending key) in why. */
int rl_limits_load_file(struct rl_limits *l, const char *path, char *why, size_t whylen);

/* rl_addr.c */
/* Parses a bare IPv4 or IPv6 address of len bytes.  true when valid. */
bool rl_addr_parse(const char *s, size_t len, struct rl_addr *out);
/* Canonical text: dotted quad for IPv4 (mapped or not), RFC 5952 for IPv6. */
void rl_addr_format(const struct rl_addr *a, char *out, size_t outlen);
/* GTM_TRUSTED_PROXIES: comma-separated addresses or CIDRs.  0, or -1 with the
 * bad entry named in why. */
int rl_proxies_parse(const char *spec, struct rl_proxies *out, char *why, size_t whylen);
void rl_proxies_free(struct rl_proxies *p);
bool rl_proxies_contain(const struct rl_proxies *p, const struct rl_addr *a);
/* The client's address as text (into out): the peer, or when the peer is a
 * trusted proxy the right-most X-Forwarded-For entry that is not one (the
 * left-most when all are); entries that are not addresses are skipped. */
void rl_client_ip(const struct rl_proxies *trusted, const char *peer, const char *forwarded_for, char *out,
                  size_t outlen);

#endif
