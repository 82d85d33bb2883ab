/* The LLM settings from the environment.  Every error names the variable so
 * the operator knows what to fix; zero configured providers is left for
 * llm_generate to answer (503), as a server without AI routes still serves. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/llm_internal.h"

#define DEFAULT_PROVIDERS "openai,anthropic,gemini"
#define DEFAULT_THRESHOLD 5
#define DEFAULT_RECOVERY_S 300
#define DEFAULT_ATTEMPTS 2

static const char *env_or_empty(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

static int read_unsigned(const char *var, unsigned min, unsigned dflt, unsigned *out, char *err,
                         size_t errlen) {
    const char *text = getenv(var);
    if (!text || !*text) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (!isdigit((unsigned char)*text) || errno || *end || v > UINT_MAX || v < min) {
        snprintf(err, errlen, "%s must be a whole number of at least %u, not '%s'", var, min, text);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* Copies value into dst (of size cap), refusing what would be cut short. */
static int copy_setting(char *dst, size_t cap, const char *value, const char *var, char *err,
                        size_t errlen) {
    size_t n = strlen(value);
    if (n >= cap) {
        snprintf(err, errlen, "%s is too long (%zu bytes, at most %zu)", var, n, cap - 1);
        return -1;
    }
    memcpy(dst, value, n + 1);
    return 0;
}

static bool has_bad_chars(const char *s, const char *also_bad) {
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f || strchr(also_bad, *s))
            return true;
    return false;
}

/* One provider's settings; *configured false when it has no key (and, for
 * OpenAI, no base URL of its own). */
static int read_provider(const struct llm_provider_ops *ops, struct llm_provider_config *pc,
                         bool *configured, char *err, size_t errlen) {
    char upper[16], var_key[48], var_base[48], var_model[48];
    size_t i = 0;
    for (; ops->name[i] && i < sizeof(upper) - 1; i++)
        upper[i] = (char)toupper((unsigned char)ops->name[i]);
    upper[i] = '\0';
    snprintf(var_key, sizeof(var_key), "%s_API_KEY", upper);
    snprintf(var_base, sizeof(var_base), "%s_BASE_URL", upper);
    snprintf(var_model, sizeof(var_model), "%s_MODEL", upper);

    const char *key = env_or_empty(var_key);
    const char *base = env_or_empty(var_base);
    const char *model = env_or_empty(var_model);
    *configured = *key || (strcmp(ops->name, "openai") == 0 && *base);
    if (!*configured)
        return 0;

    memset(pc, 0, sizeof(*pc));
    snprintf(pc->name, sizeof(pc->name), "%s", ops->name);
    if (copy_setting(pc->api_key, sizeof(pc->api_key), key, var_key, err, errlen) != 0 ||
        copy_setting(pc->base_url, sizeof(pc->base_url), *base ? base : ops->default_base_url,
                     var_base, err, errlen) != 0 ||
        copy_setting(pc->model, sizeof(pc->model), *model ? model : ops->default_model, var_model,
                     err, errlen) != 0)
        return -1;
    if (has_bad_chars(pc->api_key, "")) {
        snprintf(err, errlen, "%s contains spaces or control characters", var_key);
        return -1;
    }
    if ((strncasecmp(pc->base_url, "http://", 7) != 0 && strncasecmp(pc->base_url, "https://", 8) != 0) ||
        has_bad_chars(pc->base_url, "")) {
        snprintf(err, errlen, "%s must be an http:// or https:// URL", var_base);
        return -1;
    }
    /* The model goes into Gemini's URL path. */
    if (has_bad_chars(pc->model, "?#/%")) {
        snprintf(err, errlen, "%s must be a model id without spaces, '/', '?', '#' or '%%'", var_model);
        return -1;
    }
    return 0;
}

int llm_config_from_env(struct llm_config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->attempts_per_provider = DEFAULT_ATTEMPTS;
    if (read_unsigned("LLM_CIRCUIT_BREAKER_FAILURE_THRESHOLD", 1, DEFAULT_THRESHOLD,
                      &cfg->breaker_threshold, err, errlen) != 0 ||
        read_unsigned("LLM_CIRCUIT_BREAKER_RECOVERY_TIMEOUT", 0, DEFAULT_RECOVERY_S,
                      &cfg->breaker_recovery_s, err, errlen) != 0)
        return -1;

    const char *list = getenv("LLM_PROVIDERS");
    if (!list || !*list)
        list = DEFAULT_PROVIDERS;
    const struct llm_provider_ops *seen[LLM_MAX_PROVIDERS] = {NULL};
    size_t n_seen = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *item = p;
        p += len + (p[len] == ',');
        while (len && isspace((unsigned char)*item)) {
            item++;
            len--;
        }
        while (len && isspace((unsigned char)item[len - 1]))
            len--;
        if (!len)
            continue;
        char name[16];
        if (len >= sizeof(name)) {
            snprintf(err, errlen, "LLM_PROVIDERS: unknown provider '%.*s' (known: openai, anthropic, gemini)",
                     (int)(len > 40 ? 40 : len), item);
            return -1;
        }
        for (size_t i = 0; i < len; i++)
            name[i] = (char)tolower((unsigned char)item[i]);
        name[len] = '\0';
        const struct llm_provider_ops *ops = llm_provider_ops_find(name);
        if (!ops) {
            snprintf(err, errlen, "LLM_PROVIDERS: unknown provider '%s' (known: openai, anthropic, gemini)",
                     name);
            return -1;
        }
        bool duplicate = false;
        for (size_t i = 0; i < n_seen; i++)
            duplicate |= seen[i] == ops;
        if (duplicate)
            continue;
        seen[n_seen++] = ops;
        bool configured;
        if (read_provider(ops, &cfg->providers[cfg->n_providers], &configured, err, errlen) != 0)
            return -1;
        if (configured)
            cfg->n_providers++;
    }
    return 0;
}
