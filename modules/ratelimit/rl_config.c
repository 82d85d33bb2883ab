/* The limit tables: the upstream's numbers, and the override file. */
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

const char *const rl_endpoint_names[RL_ENDPOINTS] = {
    "company_generate", "account_generate", "persona_generate", "campaign_generate",
};
const char *const rl_tier_names[RL_TIERS] = {"free", "pro", "enterprise"};

/* The upstream's production tier table (core/user_rate_limiter.py). */
static const struct rl_tier_limits production_tiers[RL_TIERS] = {
    [RL_FREE] = {{10, 20, 20, 5}, 100, 1000},
    [RL_PRO] = {{100, 200, 200, 50}, 1000, 10000},
    [RL_ENTERPRISE] = {{1000, 2000, 2000, 500}, 10000, 100000},
};
/* Its development table, which had one row because every user was free. */
static const struct rl_tier_limits development_row = {{1000, 1000, 1000, 1000}, 10000, 100000};

/* Demo limits per client IP (CONTRACT §4; the upstream's own were 5000/h and
 * only on two routes). */
static const int32_t production_demo[RL_ENDPOINTS] = {5, 20, 20, 5};
static const int32_t development_demo = 1000;

static int32_t max32(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

void rl_limits_defaults(struct rl_limits *l, bool development)
{
    memset(l, 0, sizeof *l);
    l->development = development;
    l->window_s = RL_DEFAULT_WINDOW_S;
    l->sweep_s = RL_DEFAULT_SWEEP_S;
    for (int t = 0; t < RL_TIERS; t++) {
        const struct rl_tier_limits *prod = &production_tiers[t];
        struct rl_tier_limits *out = &l->user[t];
        *out = *prod;
        if (development) {
            /* Development relaxes limits; it never makes a paid tier stricter
             * than production (the upstream's table predates tiers). */
            for (int e = 0; e < RL_ENDPOINTS; e++) {
                out->endpoint[e] = max32(prod->endpoint[e], development_row.endpoint[e]);
            }
            out->daily = max32(prod->daily, development_row.daily);
            out->monthly = max32(prod->monthly, development_row.monthly);
        }
    }
    for (int e = 0; e < RL_ENDPOINTS; e++) {
        l->demo[e] = development ? development_demo : production_demo[e];
    }
}

/* --- the override file --- */

static int find_name(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

/* A whole number in [min, max] at path (for the message). */
static int read_number(json_t *v, const char *path, long min, long max, int32_t *out, char *why, size_t whylen)
{
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(why, whylen, "%s: expected a whole number from %ld to %ld", path, min, max);
        return -1;
    }
    *out = (int32_t)json_integer_value(v);
    return 0;
}

static int read_endpoint_limits(json_t *obj, const char *path, bool with_totals, int32_t *endpoint, int32_t *daily,
                                int32_t *monthly, char *why, size_t whylen)
{
    char sub[160];
    if (!json_is_object(obj)) {
        snprintf(why, whylen, "%s: expected an object of limits", path);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        snprintf(sub, sizeof sub, "%s.%s", path, key);
        int e = find_name(rl_endpoint_names, RL_ENDPOINTS, key);
        int32_t *slot = NULL;
        if (e >= 0) {
            slot = &endpoint[e];
        } else if (with_totals && strcmp(key, "daily") == 0) {
            slot = daily;
        } else if (with_totals && strcmp(key, "monthly") == 0) {
            slot = monthly;
        }
        if (!slot) {
            snprintf(why, whylen, "%s: unknown key (expected company_generate, account_generate, persona_generate, "
                                  "campaign_generate%s)",
                     sub, with_totals ? ", daily or monthly" : "");
            return -1;
        }
        if (read_number(v, sub, 0, RL_LIMIT_MAX, slot, why, whylen) < 0) {
            return -1;
        }
    }
    return 0;
}

static int apply_overrides(struct rl_limits *l, json_t *root, char *why, size_t whylen)
{
    if (!json_is_object(root)) {
        snprintf(why, whylen, "expected a JSON object with user, demo, window_seconds or sweep_seconds");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "window_seconds") == 0) {
            if (read_number(v, key, 1, RL_WINDOW_MAX_S, &l->window_s, why, whylen) < 0) {
                return -1;
            }
        } else if (strcmp(key, "sweep_seconds") == 0) {
            if (read_number(v, key, 1, RL_WINDOW_MAX_S, &l->sweep_s, why, whylen) < 0) {
                return -1;
            }
        } else if (strcmp(key, "demo") == 0) {
            if (read_endpoint_limits(v, "demo", false, l->demo, NULL, NULL, why, whylen) < 0) {
                return -1;
            }
        } else if (strcmp(key, "user") == 0) {
            if (!json_is_object(v)) {
                snprintf(why, whylen, "user: expected an object keyed by tier (free, pro, enterprise)");
                return -1;
            }
            const char *tier_name;
            json_t *tier_obj;
            json_object_foreach(v, tier_name, tier_obj) {
                char path[96];
                snprintf(path, sizeof path, "user.%s", tier_name);
                int t = find_name(rl_tier_names, RL_TIERS, tier_name);
                if (t < 0) {
                    snprintf(why, whylen, "%s: unknown tier (expected free, pro or enterprise)", path);
                    return -1;
                }
                struct rl_tier_limits *tl = &l->user[t];
                if (read_endpoint_limits(tier_obj, path, true, tl->endpoint, &tl->daily, &tl->monthly, why,
                                         whylen) < 0) {
                    return -1;
                }
            }
        } else {
            snprintf(why, whylen, "%s: unknown key (expected user, demo, window_seconds or sweep_seconds)", key);
            return -1;
        }
    }
    return 0;
}

int rl_limits_load_file(struct rl_limits *l, const char *path, char *why, size_t whylen)
{
    char reason[384];
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0) {
            snprintf(reason, sizeof reason, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        } else {
            snprintf(reason, sizeof reason, "%s", jerr.text);
        }
    }
    /* all or nothing: a file that fails halfway leaves l as it was */
    struct rl_limits next = *l;
    int rc = root ? apply_overrides(&next, root, reason, sizeof reason) : -1;
    json_decref(root);
    if (rc < 0) {
        snprintf(why, whylen, "GTM_RATE_LIMITS_FILE %s: %s", path, reason);
        return -1;
    }
    *l = next;
    return 0;
}
