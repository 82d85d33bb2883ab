/* Loaded module instances, as the host keeps them. */
#ifndef GTM_MODULE_HOST_H
#define GTM_MODULE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "gtm/gtm.h"

struct server;

struct gtm_mod {
    struct server *srv;
    const struct gtm_module *desc;
    void *dl;
    char *path;
    void *state;                /* owned by the module, released by its fini */
    unsigned refs;              /* routes in the table, requests, async operations */
    unsigned generation;
    bool live;                  /* its routes are in the table */
    char *src;                  /* the file in GTM_MODULE_DIR it came from */
    struct stat src_st;         /* that file as it was when loaded: a reload compares */
    char *reload_error;         /* why the last reload of src was refused, or NULL */
    uint64_t retired_ns;        /* uv_hrtime() when a swap replaced it, else 0 */
    struct gtm_mod *next;
};

/* A file in GTM_MODULE_DIR that no module came from and that was refused:
 * tried again only when it changes; shown in /health/detailed. */
struct refused_file {
    char *path;
    struct stat st;
    char *error;
    struct refused_file *next;
};

const char *module_name(const struct gtm_mod *m);
void module_ref(struct gtm_mod *m);
/* The last reference of a retired instance runs fini and frees it. */
void module_unref(struct gtm_mod *m);
/* Answers 503 for requests still on a replaced instance once
 * GTM_MODULE_DRAIN_TIMEOUT has passed since its swap (drain.c). */
void module_drain_watch(struct server *srv);

/* Loads every *.so in dir, in name order.  A file that is refused is logged
 * and skipped.  Returns the number loaded, or -1 when dir cannot be read. */
int modules_load_dir(struct server *srv, const char *dir);
/* Loads one file.  0, or -1 with the reason in err. */
int module_load(struct server *srv, const char *path, char *err, size_t errlen);
/* SIGHUP: loads every *.so in dir that is new or changed since it was
 * loaded.  A changed file is copied to a unique path (dlopen caches by path),
 * loaded, checked and initialised before its routes replace the old
 * instance's; requests already running finish on the old one, which is
 * finalised when its last user is done.  A file that is refused leaves the old
 * instance serving and the reason in reload_error.  Returns how many were
 * (re)loaded, or -1 when dir cannot be read. */
int modules_reload_dir(struct server *srv, const char *dir);
/* Retires every instance (fini runs when its last user is done). */
void modules_unload_all(struct server *srv);

int module_call_authenticate(struct gtm_mod *m, struct gtm_req *r);
int module_call_admit(struct gtm_mod *m, struct gtm_req *r, const char *limit_key);
void module_call_handler(struct gtm_mod *m, gtm_handler_fn fn, struct gtm_req *r);

/* The table handed to every module's init. */
const struct gtm_host *host_api(void);

#endif
