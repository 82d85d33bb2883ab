#include "util/defer.h"

#include <stdlib.h>

struct deferred {
    uv_timer_t timer;
    void (*fn)(void *arg);
    void *arg;
};

static void deferred_free(uv_handle_t *h)
{
    free(h->data);
}

static void deferred_fire(uv_timer_t *t)
{
    struct deferred *d = t->data;
    d->fn(d->arg);
    uv_close((uv_handle_t *)&d->timer, deferred_free);
}

int defer_call(uv_loop_t *loop, void (*fn)(void *arg), void *arg)
{
    struct deferred *d = malloc(sizeof *d);
    if (!d) {
        return -1;
    }
    d->fn = fn;
    d->arg = arg;
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    /* one-shot and never re-armed from its own callback, so libuv 1.44's
     * same-pass zero timer cannot loop */
    uv_timer_start(&d->timer, deferred_fire, 0, 0);
    return 0;
}
