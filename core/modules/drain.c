/* The drain deadline of a replaced module instance: requests still bound to
 * it GTM_MODULE_DRAIN_TIMEOUT after the swap are answered 503 by the host, so
 * an old instance cannot keep clients (and itself) alive forever; it is
 * finalised once the calls it still has out return. */
#include <uv.h>

#include "gen/gen.h"
#include "http/conn.h"
#include "http/request.h"
#include "http/response.h"
#include "log.h"
#include "modules/module_host.h"
#include "server.h"

static uint64_t deadline_ns(const struct server *srv)
{
    return (uint64_t)(srv->cfg->module_drain_timeout * 1e9);
}

static void abandon(struct gtm_req *r, uint64_t waited_ns)
{
    struct gtm_mod *m = r->mod;
    log_msg(LOG_WARN, r->id, module_name(m),
            "module %s %s (generation %u) was replaced %.3g s ago and this request is still on it: "
            "GTM_MODULE_DRAIN_TIMEOUT passed, answering 503", module_name(m), m->desc->version ? m->desc->version : "",
            m->generation, (double)waited_ns / 1e9);
    if (r->state == REQ_STREAMING) {
        response_stream_end(r);
    } else if (r->state == REQ_DISPATCHED) {
        response_add_header(r, "retry-after", "1");
        response_error(r, 503, "The server was updated while this request ran and it did not finish in time: retry");
    }
    r->abandoned = true;   /* the module's own answer, if it ever comes, goes nowhere */
    if (r->gen_waiter) {
        gen_leave(r->gen_waiter);
    }
}

static void on_drain_check(uv_timer_t *t)
{
    struct server *srv = t->data;
    uint64_t now = uv_hrtime(), limit = deadline_ns(srv), next = 0;
    for (struct conn *c = srv->conns, *cn; c; c = cn) {
        cn = c->next;   /* an answer may close c */
        struct gtm_req *r = c->req;
        if (!r || !r->mod || r->mod->live || r->abandoned || r->mod->retired_ns == 0) {
            continue;
        }
        uint64_t waited = now - r->mod->retired_ns;
        if (waited >= limit) {
            abandon(r, waited);
        } else if (next == 0 || limit - waited < next) {
            next = limit - waited;
        }
    }
    if (next) {
        uv_timer_start(t, on_drain_check, next / 1000000 + 1, 0);
    }
}

void module_drain_watch(struct server *srv)
{
    if (!uv_is_active((uv_handle_t *)&srv->module_drain_timer)) {
        uv_timer_start(&srv->module_drain_timer, on_drain_check,
                       (uint64_t)(srv->cfg->module_drain_timeout * 1000.0) + 1, 0);
    }
}
