/* Stand-ins for the auth and ratelimit modules in the request-body fuzz
 * target: every request is let through as one signed-in user, so that the
 * bodies reach the real modules' validation without a database or a token.
 * Loaded from the body target's own module directory only; its file name
 * sorts first there, so its authenticate is the one the host uses (the
 * loader takes the first, in name order). */
#include <stdlib.h>

#include "gtm/gtm.h"

struct hooks_state {
    const struct gtm_host *host;
};

static int hooks_authenticate(void *state, struct gtm_req *req)
{
    struct hooks_state *st = state;
    st->host->req_set_user(req, "7d6f1c7e-2a3b-4c5d-8e9f-0a1b2c3d4e5f", "user");
    return GTM_HOOK_CONTINUE;
}

static int hooks_admit(void *state, struct gtm_req *req, const char *limit_key)
{
    (void)state;
    (void)req;
    (void)limit_key;
    return GTM_HOOK_CONTINUE;
}

static int hooks_init(const struct gtm_host *host, struct gtm_mod *self, void **state)
{
    (void)self;
    struct hooks_state *st = calloc(1, sizeof *st);
    if (!st) {
        return GTM_ENOMEM;
    }
    st->host = host;
    *state = st;
    return 0;
}

static void hooks_fini(void *state)
{
    free(state);
}

static const struct gtm_module hooks_desc = {
    GTM_MODULE_STAMP,
    .name = "fuzz_hooks",
    .version = "0",
    .init = hooks_init,
    .fini = hooks_fini,
    .authenticate = hooks_authenticate,
    .admit = hooks_admit,
};

GTM_EXPORT const struct gtm_module *gtm_module_v1(void)
{
    return &hooks_desc;
}
