/* gtmd module ABI: what a module exports.
 *
 * A module is a shared object that exports exactly one symbol per ABI major,
 * the function gtm_module_v1(), returning a descriptor stamped with the ABI
 * version it was built against.  The host refuses a descriptor whose magic,
 * major, minor (newer than the host's), size or build signature does not fit,
 * and says why in one log line.  Minor versions only append: fields are added
 * at the end of structs (struct_size tells the host how much is there), and
 * host functions are added at the end of struct gtm_host.
 *
 * Changelog (bump GTM_ABI_MINOR for every append, GTM_ABI_MAJOR never lightly):
 *   1.0  2026-11-23  descriptor, routes, authenticate/admit hooks, host table
 *                    with request accessors, responses, validation, outbound HTTP.
 *   1.1  2026-11-23  host table: Postgres (queries, transactions, results),
 *                    JWT/JWKS verification, random bytes, SHA-256, clock;
 *                    GTM_EUNAVAILABLE, GTM_EBUSY, GTM_EQUERY.
 *   1.2  2026-11-23  host table: generate (website, prompt, LLM, validation as
 *                    one call), streamed answers (SSE); GTM_EINVALID_OUTPUT,
 *                    GTM_EPROVIDERS.
 *   1.3  2026-12-06  descriptor: openapi, the module's part of GET /openapi.json.
 */
#ifndef GTM_MODULE_H
#define GTM_MODULE_H

#include <stddef.h>
#include <stdint.h>

#define GTM_ABI_MAJOR 1
#define GTM_ABI_MINOR 3
#define GTM_MODULE_MAGIC 0x314d5447u /* "GTM1" little-endian */

/* Pointer size, byte order and the jansson major: what decides whether two
 * builds can share structs.  A module built elsewhere with another signature is
 * refused even when the versions agree. */
#define GTM_STR_(x) #x
#define GTM_STR(x) GTM_STR_(x)
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define GTM_BUILD_ENDIAN "be"
#else
#define GTM_BUILD_ENDIAN "le"
#endif
#define GTM_BUILD_SIGNATURE \
    "ptr" GTM_STR(__SIZEOF_POINTER__) ",long" GTM_STR(__SIZEOF_LONG__) "," GTM_BUILD_ENDIAN ",jansson2"

#ifdef __cplusplus
extern "C" {
#endif

struct gtm_host;
struct gtm_req;          /* one HTTP request, owned by the host */
struct gtm_mod;          /* one loaded module instance, owned by the host */

/* Return codes across the ABI: 0 or a negative GTM_E*. */
enum {
    GTM_OK = 0,
    GTM_EINVAL = -22,
    GTM_ENOMEM = -12,
    GTM_ETIMEDOUT = -110,
    GTM_ECONNREFUSED = -111,
    GTM_ECANCELED = -125,
    GTM_ETOOBIG = -27,     /* EFBIG: an answer over its size cap */
    GTM_EIO = -5,
    GTM_EGONE = -32,       /* EPIPE: the client went away */
    /* since 1.1 */
    GTM_EUNAVAILABLE = -100, /* ENETDOWN: a backing service (the database) cannot be reached */
    GTM_EBUSY = -16,         /* EBUSY: its queue is full */
    GTM_EQUERY = -1000,      /* the database refused a statement (see pg_sqlstate) */
    /* since 1.2 */
    GTM_EINVALID_OUTPUT = -1001, /* every provider answered, none with a valid output */
    GTM_EPROVIDERS = -1002,      /* every provider failed */
};

/* What a hook tells the host. */
enum gtm_hook_result {
    GTM_HOOK_CONTINUE = 0, /* go on to the next step now */
    GTM_HOOK_DONE = 1,     /* the hook has answered the request (e.g. 401) */
    GTM_HOOK_ASYNC = 2,    /* the hook will call host->hook_done() later */
};

enum gtm_method {
    GTM_GET = 1u << 0,
    GTM_POST = 1u << 1,
    GTM_PUT = 1u << 2,
    GTM_DELETE = 1u << 3,
    GTM_PATCH = 1u << 4,
    GTM_HEAD = 1u << 5,    /* routes never declare HEAD: GET routes answer it */
    GTM_OPTIONS = 1u << 6,
};

enum gtm_route_flags {
    GTM_ROUTE_AUTH = 1u << 0,      /* runs the authenticate hook first */
    GTM_ROUTE_RATELIMIT = 1u << 1, /* runs the admit hook after auth */
};

/* A handler answers through the host (respond_*), now or later.  It must
 * answer exactly once, unless the request is gone (req_gone()). */
typedef void (*gtm_handler_fn)(void *state, struct gtm_req *req);

struct gtm_route {
    unsigned methods;          /* gtm_method bits */
    const char *pattern;       /* "/api/companies/{company_id}" */
    gtm_handler_fn handler;
    unsigned flags;            /* gtm_route_flags */
    const char *limit_key;     /* for the admit hook, e.g. "account_generate" */
};

enum gtm_module_flags {
    /* The host may dlclose the old code after a swap: the module registers no
     * atexit/thread-local destructors and keeps no pointers into itself
     * anywhere the host cannot see. */
    GTM_MODULE_UNLOADABLE = 1u << 0,
};

struct gtm_module {
    uint32_t magic;            /* GTM_MODULE_MAGIC */
    uint16_t abi_major;        /* GTM_ABI_MAJOR as compiled */
    uint16_t abi_minor;        /* GTM_ABI_MINOR as compiled */
    uint32_t struct_size;      /* sizeof(struct gtm_module) as compiled */
    const char *build_sig;     /* GTM_BUILD_SIGNATURE as compiled */
    const char *name;          /* "company"; one instance per name */
    const char *version;       /* free text, shown in /health/detailed */
    unsigned flags;            /* gtm_module_flags */

    /* init: 0 on success with *state set (the module owns it); a negative
     * GTM_E* refuses the load, and the host logs `why` if the module set it. */
    int (*init)(const struct gtm_host *host, struct gtm_mod *self, void **state);
    void (*fini)(void *state);

    const struct gtm_route *routes;
    size_t n_routes;

    /* Optional.  authenticate runs for GTM_ROUTE_AUTH routes of every module;
     * one module (auth) provides it.  admit runs for GTM_ROUTE_RATELIMIT routes;
     * one module (ratelimit) provides it.  Both return gtm_hook_result. */
    int (*authenticate)(void *state, struct gtm_req *req);
    int (*admit)(void *state, struct gtm_req *req, const char *limit_key);

    void *reserved[8];         /* zero; later minors give them meaning */

    /* since 1.3 (the host reads it only when struct_size covers it) */

    /* Optional: a JSON text, the module's fragment of an OpenAPI 3.1 document,
     * {"tags": [...], "paths": {...}, "components": {"schemas": {...}}}, with
     * an operation for each route of the table and nothing else.  The host
     * merges the fragments of the loaded modules into GET /openapi.json, adds
     * "security" from GTM_ROUTE_AUTH unless an operation sets it, adds the
     * 401/429/413/408/500 answers the host itself gives, and provides the
     * schemas HTTPError ({"detail": string}) and ValidationError (422).
     * A module with an authenticate or admit hook may list what the hook
     * itself answers under {"x-gtm-hook-responses": {"authenticate": {"400":
     * {...}}, "admit": {...}}}; the host adds those to every route the hook
     * guards.  The text must live as long as the module is loaded. */
    const char *openapi;
};

/* The one exported symbol of ABI major 1. */
typedef const struct gtm_module *(*gtm_module_v1_fn)(void);
#define GTM_MODULE_ENTRY_V1 "gtm_module_v1"

/* Fills the stamp fields; a module writes
 *   static const struct gtm_module desc = { GTM_MODULE_STAMP, .name = ..., };
 *   GTM_EXPORT const struct gtm_module *gtm_module_v1(void) { return &desc; } */
#define GTM_MODULE_STAMP                                                  \
    .magic = GTM_MODULE_MAGIC, .abi_major = GTM_ABI_MAJOR,                \
    .abi_minor = GTM_ABI_MINOR, .struct_size = sizeof(struct gtm_module), \
    .build_sig = GTM_BUILD_SIGNATURE

#define GTM_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif
#endif
