#include "modules/module_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

/* The descriptor up to and including the last v1.0 member. */
#define DESC_V1_0_SIZE (offsetof(struct gtm_module, reserved) + sizeof(((struct gtm_module *)0)->reserved))

const char *module_name(const struct gtm_mod *m)
{
    return m && m->desc && m->desc->name ? m->desc->name : "?";
}

void module_ref(struct gtm_mod *m)
{
    m->refs++;
}

static void module_destroy(struct gtm_mod *m)
{
    if (m->desc && m->desc->fini) {
        m->desc->fini(m->state);
    }
    /* Code is unmapped only when the module says it is safe (anchors §4.2.8). */
    if (m->dl && m->desc && (m->desc->flags & GTM_MODULE_UNLOADABLE)) {
        dlclose(m->dl);
    }
    free(m->path);
    free(m);
}

void module_unref(struct gtm_mod *m)
{
    if (--m->refs == 0 && !m->live) {
        module_destroy(m);
    }
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Checks a descriptor before any of the module's code other than the entry
 * function runs.  0, or -1 with the reason. */
static int check_descriptor(const struct gtm_module *d, struct server *srv, char *err, size_t errlen)
{
    if (!d) {
        snprintf(err, errlen, "gtm_module_v1() returned no descriptor");
        return -1;
    }
    if (d->magic != GTM_MODULE_MAGIC) {
        snprintf(err, errlen, "bad magic 0x%08x (expected 0x%08x): not a gtmd module descriptor",
                 d->magic, GTM_MODULE_MAGIC);
        return -1;
    }
    if (d->abi_major != GTM_ABI_MAJOR) {
        snprintf(err, errlen, "built for gtmd ABI %u.%u, this gtmd provides ABI %u.%u (another major)",
                 d->abi_major, d->abi_minor, GTM_ABI_MAJOR, GTM_ABI_MINOR);
        return -1;
    }
    if (d->abi_minor > GTM_ABI_MINOR) {
        snprintf(err, errlen, "built for gtmd ABI %u.%u, this gtmd provides ABI %u.%u (needs a newer gtmd)",
                 d->abi_major, d->abi_minor, GTM_ABI_MAJOR, GTM_ABI_MINOR);
        return -1;
    }
    if (d->struct_size < DESC_V1_0_SIZE) {
        snprintf(err, errlen, "descriptor is %u bytes, ABI %u.0 needs at least %zu", d->struct_size,
                 GTM_ABI_MAJOR, (size_t)DESC_V1_0_SIZE);
        return -1;
    }
    if (!d->build_sig || strcmp(d->build_sig, GTM_BUILD_SIGNATURE) != 0) {
        snprintf(err, errlen, "build signature '%s' differs from this gtmd's '%s'",
                 d->build_sig ? d->build_sig : "(none)", GTM_BUILD_SIGNATURE);
        return -1;
    }
    if (!d->name || !*d->name || strlen(d->name) > 64) {
        snprintf(err, errlen, "descriptor has no usable name");
        return -1;
    }
    if (!d->init) {
        snprintf(err, errlen, "module %s has no init function", d->name);
        return -1;
    }
    if (d->n_routes && !d->routes) {
        snprintf(err, errlen, "module %s declares %zu routes but no table", d->name, d->n_routes);
        return -1;
    }
    for (struct gtm_mod *m = srv->mods; m; m = m->next) {
        if (m->live && strcmp(module_name(m), d->name) == 0) {
            snprintf(err, errlen, "a module named %s is already loaded from %s", d->name, m->path);
            return -1;
        }
    }
    return 0;
}

/* Why dlsym found no v1 entry: a module of another major says so by name. */
static void explain_missing_entry(void *dl, char *err, size_t errlen)
{
    for (int major = 2; major <= 9; major++) {
        char sym[32];
        snprintf(sym, sizeof sym, "gtm_module_v%d", major);
        if (dlsym(dl, sym)) {
            snprintf(err, errlen, "exports %s (gtmd ABI %d.x), this gtmd provides ABI %u.%u", sym, major,
                     GTM_ABI_MAJOR, GTM_ABI_MINOR);
            return;
        }
    }
    snprintf(err, errlen, "no %s entry point: not a gtmd module", GTM_MODULE_ENTRY_V1);
}

int module_load(struct server *srv, const char *path, char *err, size_t errlen)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load: %s", why ? why : "unknown dlopen error");
        return -1;
    }
    gtm_module_v1_fn entry;
    *(void **)&entry = dlsym(dl, GTM_MODULE_ENTRY_V1);
    if (!entry) {
        explain_missing_entry(dl, err, errlen);
        dlclose(dl);
        return -1;
    }
    const struct gtm_module *d = entry();
    if (check_descriptor(d, srv, err, errlen) < 0) {
        dlclose(dl);
        return -1;
    }
    struct gtm_mod *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        dlclose(dl);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    m->srv = srv;
    m->desc = d;
    m->dl = dl;
    m->generation = 1;
    int rc = d->init(host_api(), m, &m->state);
    if (rc != 0) {
        snprintf(err, errlen, "module %s %s: init failed (%d)", d->name, d->version ? d->version : "",
                 rc);
        free(m->path);
        free(m);
        dlclose(dl);
        return -1;
    }
    for (size_t i = 0; i < d->n_routes; i++) {
        const struct gtm_route *rt = &d->routes[i];
        char why[256];
        if (router_add(&srv->router, rt->pattern, rt->methods, rt->handler, NULL, rt->flags,
                       rt->limit_key, m, why, sizeof why) < 0) {
            snprintf(err, errlen, "module %s: %s", d->name, why);
            router_remove_module(&srv->router, m);
            if (d->fini) {
                d->fini(m->state);
            }
            free(m->path);
            free(m);
            dlclose(dl);
            return -1;
        }
    }
    m->live = true;
    m->refs = 1;    /* the table's */
    m->next = srv->mods;
    srv->mods = m;
    if (d->authenticate && !srv->auth_mod) {
        srv->auth_mod = m;
    }
    if (d->admit && !srv->admit_mod) {
        srv->admit_mod = m;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int modules_load_dir(struct server *srv, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0 || de->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(names, cap * sizeof *v);
            if (!v) {
                break;
            }
            names = v;
        }
        names[n] = strdup(de->d_name);
        if (names[n]) {
            n++;
        }
    }
    closedir(d);
    if (n > 1) {
        qsort(names, n, sizeof *names, cmp_names);
    }
    int loaded = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (module_load(srv, path, err, sizeof err) == 0) {
            const struct gtm_module *md = srv->mods->desc;
            log_msg(LOG_INFO, NULL, md->name, "module %s %s loaded from %s (ABI %u.%u, %zu routes)",
                    md->name, md->version ? md->version : "", path, md->abi_major, md->abi_minor,
                    md->n_routes);
            loaded++;
        } else {
            log_msg(LOG_ERROR, NULL, NULL, "module %s refused: %s", base_name(path), err);
        }
        free(names[i]);
    }
    free(names);
    return loaded;
}

void modules_unload_all(struct server *srv)
{
    struct gtm_mod *m = srv->mods;
    srv->mods = NULL;
    srv->auth_mod = srv->admit_mod = NULL;
    while (m) {
        struct gtm_mod *next = m->next;
        router_remove_module(&srv->router, m);
        m->live = false;
        module_unref(m);
        m = next;
    }
}

int module_call_authenticate(struct gtm_mod *m, struct gtm_req *r)
{
    return m->desc->authenticate(m->state, r);
}

int module_call_admit(struct gtm_mod *m, struct gtm_req *r, const char *limit_key)
{
    return m->desc->admit(m->state, r, limit_key);
}

void module_call_handler(struct gtm_mod *m, gtm_handler_fn fn, struct gtm_req *r)
{
    fn(m->state, r);
}
