/* Route table: static segments and {param} segments.  A static segment wins
 * over a parameter at the same place; a path that matches only with another
 * method gives the union of methods for Allow. */
#ifndef GTM_ROUTER_H
#define GTM_ROUTER_H

#include <stddef.h>
#include "gtm/module.h"

#define ROUTE_MAX_PARAMS 8
#define ROUTE_MAX_SEGS 16

struct gtm_mod;

struct route_entry {
    char *pattern;
    char *segs[ROUTE_MAX_SEGS];    /* "{name}" segments are parameters */
    unsigned n_segs;
    unsigned methods;              /* gtm_method bits; GET implies HEAD */
    gtm_handler_fn handler;
    void *core_state;              /* for core routes (mod == NULL) */
    unsigned flags;
    const char *limit_key;
    struct gtm_mod *mod;           /* owning module instance, or NULL */
};

struct router {
    struct route_entry *v;
    size_t n, cap;
};

struct route_match {
    const struct route_entry *entry;
    unsigned allow;                /* on ROUTE_METHOD: allowed methods */
    unsigned n_params;
    const char *names[ROUTE_MAX_PARAMS];
    const char *values[ROUTE_MAX_PARAMS];   /* pointers into the scratch copy */
    size_t value_lens[ROUTE_MAX_PARAMS];
};

enum router_result { ROUTE_NONE = 0, ROUTE_FOUND = 1, ROUTE_METHOD = 2 };

/* 0, or -1 with a reason (bad pattern, clash with an existing route). */
int router_add(struct router *r, const char *pattern, unsigned methods, gtm_handler_fn handler,
               void *core_state, unsigned flags, const char *limit_key, struct gtm_mod *mod,
               char *err, size_t errlen);
/* Removes every route of mod. */
void router_remove_module(struct router *r, struct gtm_mod *mod);
int router_match(const struct router *r, const char *path, unsigned method, struct route_match *m);
/* "GET, HEAD, POST" for an Allow header; buf must hold 64 bytes. */
const char *router_allow_text(unsigned methods, char *buf, size_t len);
unsigned router_method_bit(const char *name);
void router_free(struct router *r);

#endif
