/* GET /openapi.json and GET /docs: the document is assembled from the core's
 * own fragment and each loaded module's, checked against the route table, and
 * kept serialised until the modules change. */
#ifndef GTM_OPENAPI_H
#define GTM_OPENAPI_H

#include <stddef.h>

struct server;

struct openapi_stats {
    unsigned operations;     /* in the document */
    unsigned undocumented;   /* routed, but no module described them: described by the host */
    unsigned unrouted;       /* described by a module, but not routed: left out */
    unsigned conflicts;      /* fragments that were not JSON, or clashed with another */
};

struct openapi {
    char *text;              /* the serialised document, or NULL before the first build */
    size_t len;
    char etag[24];
    struct openapi_stats stats;
};

/* Rebuilds srv->openapi from the loaded modules and the route table; every
 * mismatch is one warning line.  0, or -1 when out of memory (the previous
 * document stays). */
int openapi_build(struct server *srv);
void openapi_free(struct openapi *o);
/* Adds GET /openapi.json and GET /docs to the public routes and GET
 * /admin/routes to the admin ones.  0, or -1 with a reason. */
int openapi_routes_add(struct server *srv, char *err, size_t errlen);

#endif
