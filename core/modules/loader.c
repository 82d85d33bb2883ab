#include "modules/module_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    if (m->retired_ns) {
        log_msg(LOG_INFO, NULL, module_name(m), "module %s %s (generation %u) drained in %.3g s and finalised",
                module_name(m), m->desc->version ? m->desc->version : "", m->generation,
                (double)(uv_hrtime() - m->retired_ns) / 1e9);
    }
    if (m->desc && m->desc->fini) {
        m->desc->fini(m->state);
    }
    /* Code is unmapped only when the module says it is safe (anchors §4.2.8). */
    if (m->dl && m->desc && (m->desc->flags & GTM_MODULE_UNLOADABLE)) {
        dlclose(m->dl);
    }
    free(m->path);
    free(m->src);
    free(m->reload_error);
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
static int check_descriptor(const struct gtm_module *d, struct server *srv, const struct gtm_mod *replacing,
                            char *err, size_t errlen)
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
    if (!d->name || !*d->name || strlen(d->name) > 64 || strspn(d->name, "abcdefghijklmnopqrstuvwxyz"
                                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                                                           strlen(d->name)) {
        snprintf(err, errlen, "descriptor has no usable name (up to 64 letters, digits, '_', '-' or '.')");
        return -1;
    }
    /* both go into a response header (x-gtm-module) and log lines */
    for (const char *s = d->version ? d->version : ""; *s; s++) {
        if (*s < 0x21 || *s > 0x7e || s - d->version >= 64) {
            snprintf(err, errlen, "module %s: its version must be up to 64 printable ASCII characters "
                                  "without spaces", d->name);
            return -1;
        }
    }
    if (!d->init) {
        snprintf(err, errlen, "module %s has no init function", d->name);
        return -1;
    }
    if (d->n_routes && !d->routes) {
        snprintf(err, errlen, "module %s declares %zu routes but no table", d->name, d->n_routes);
        return -1;
    }
    if (replacing && strcmp(module_name(replacing), d->name) != 0) {
        snprintf(err, errlen, "the new file names its module %s, the running one is %s", d->name,
                 module_name(replacing));
        return -1;
    }
    for (struct gtm_mod *m = srv->mods; m; m = m->next) {
        if (m != replacing && m->live && strcmp(module_name(m), d->name) == 0) {
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

/* A checked and initialised instance whose routes are not in the table yet,
 * or NULL with the reason. */
static struct gtm_mod *module_open(struct server *srv, const char *path, const struct gtm_mod *replacing, char *err,
                                   size_t errlen)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load: %s", why ? why : "unknown dlopen error");
        return NULL;
    }
    gtm_module_v1_fn entry;
    *(void **)&entry = dlsym(dl, GTM_MODULE_ENTRY_V1);
    if (!entry) {
        explain_missing_entry(dl, err, errlen);
        dlclose(dl);
        return NULL;
    }
    const struct gtm_module *d = entry();
    if (check_descriptor(d, srv, replacing, err, errlen) < 0) {
        dlclose(dl);
        return NULL;
    }
    struct gtm_mod *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        dlclose(dl);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->srv = srv;
    m->desc = d;
    m->dl = dl;
    m->generation = replacing ? replacing->generation + 1 : 1;
    int rc = d->init(host_api(), m, &m->state);
    if (rc != 0) {
        snprintf(err, errlen, "module %s %s: init failed (%d)", d->name, d->version ? d->version : "", rc);
        free(m->path);
        free(m);
        dlclose(dl);
        return NULL;
    }
    return m;
}

/* Undoes module_open for an instance that never served. */
static void module_discard(struct gtm_mod *m)
{
    if (m->desc->fini) {
        m->desc->fini(m->state);
    }
    dlclose(m->dl);
    free(m->path);
    free(m->src);
    free(m);
}

/* All of m's routes, or none of them with the reason. */
static int module_route(struct server *srv, struct gtm_mod *m, char *err, size_t errlen)
{
    const struct gtm_module *d = m->desc;
    for (size_t i = 0; i < d->n_routes; i++) {
        const struct gtm_route *rt = &d->routes[i];
        char why[256];
        if (router_add(&srv->router, rt->pattern, rt->methods, rt->handler, NULL, rt->flags, rt->limit_key, m, why,
                       sizeof why) < 0) {
            snprintf(err, errlen, "module %s: %s", d->name, why);
            router_remove_module(&srv->router, m);
            return -1;
        }
    }
    return 0;
}

static void module_set_source(struct gtm_mod *m, const char *src, const struct stat *st)
{
    free(m->src);
    m->src = src ? strdup(src) : NULL;
    if (st) {
        m->src_st = *st;
    }
}

int module_load(struct server *srv, const char *path, char *err, size_t errlen)
{
    struct gtm_mod *m = module_open(srv, path, NULL, err, errlen);
    if (!m) {
        return -1;
    }
    if (module_route(srv, m, err, errlen) < 0) {
        module_discard(m);
        return -1;
    }
    m->live = true;
    m->refs = 1;    /* the table's */
    m->next = srv->mods;
    srv->mods = m;
    if (m->desc->authenticate && !srv->auth_mod) {
        srv->auth_mod = m;
    }
    if (m->desc->admit && !srv->admit_mod) {
        srv->admit_mod = m;
    }
    return 0;
}

/* A private copy of path for dlopen, or -1 with the reason. */
static int stage_copy(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, outlen, "%s/gtmd-%d-XXXXXX.so", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    int dst = mkstemps(out, 3);
    if (dst < 0) {
        snprintf(err, errlen, "cannot stage a copy in %s: %s", tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return -1;
    }
    int src = open(path, O_RDONLY | O_CLOEXEC);
    int rc = src < 0 ? -1 : 0;
    char buf[65536];
    while (rc == 0) {
        ssize_t n = read(src, buf, sizeof buf);
        if (n == 0) {
            break;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        for (ssize_t off = 0; n > 0 && off < n;) {
            ssize_t w = write(dst, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w < 0) {
                n = -1;
                break;
            }
            off += w;
        }
        rc = n < 0 ? -1 : 0;
    }
    int saved = errno;
    if (src >= 0) {
        close(src);
    }
    if (close(dst) < 0 && rc == 0) {
        saved = errno;
        rc = -1;
    }
    if (rc < 0) {
        unlink(out);
        snprintf(err, errlen, "cannot copy %s: %s", path, strerror(saved));
    }
    return rc;
}

/* Replaces old with the file at src; old keeps serving when anything fails. */
static int module_swap(struct server *srv, struct gtm_mod *old, const char *src, const struct stat *st, char *err,
                       size_t errlen)
{
    uint64_t t0 = now_ns();
    char staged[4096];
    if (stage_copy(src, staged, sizeof staged, err, errlen) < 0) {
        return -1;
    }
    struct gtm_mod *m = module_open(srv, staged, old, err, errlen);
    unlink(staged);   /* the mapping outlives the name */
    if (!m) {
        return -1;
    }
    router_remove_module(&srv->router, old);
    if (module_route(srv, m, err, errlen) < 0) {
        char again[256];
        if (module_route(srv, old, again, sizeof again) < 0) {
            log_msg(LOG_ERROR, NULL, module_name(old), "module %s: its routes could not be restored: %s",
                    module_name(old), again);
        }
        module_discard(m);
        return -1;
    }
    module_set_source(m, src, st);
    char *shown = strdup(src);
    if (shown) {
        free(m->path);
        m->path = shown;
    }
    m->live = true;
    m->refs = 1;    /* the table's */
    for (struct gtm_mod **p = &srv->mods; *p; p = &(*p)->next) {
        if (*p == old) {
            m->next = old->next;
            *p = m;
            break;
        }
    }
    if (srv->auth_mod == old) {
        srv->auth_mod = m->desc->authenticate ? m : NULL;
    }
    if (srv->admit_mod == old) {
        srv->admit_mod = m->desc->admit ? m : NULL;
    }
    old->live = false;
    old->next = NULL;
    old->retired_ns = uv_hrtime();
    log_msg(LOG_INFO, NULL, m->desc->name,
            "module %s %s reloaded from %s (generation %u) in %.2f ms; %u users still on %s", m->desc->name,
            m->desc->version ? m->desc->version : "", src, m->generation, (double)(now_ns() - t0) / 1e6, old->refs - 1,
            old->desc->version ? old->desc->version : "the old one");
    module_unref(old);   /* finalised now, or when its last request or call is done */
    module_drain_watch(srv);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.so names in dir, sorted; -1 when dir cannot be read. */
static ssize_t list_modules(const char *dir, char ***out)
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
    *out = names;
    return (ssize_t)n;
}

static void log_loaded(const struct gtm_mod *m, const char *path)
{
    const struct gtm_module *md = m->desc;
    log_msg(LOG_INFO, NULL, md->name, "module %s %s loaded from %s (ABI %u.%u, %zu routes)", md->name,
            md->version ? md->version : "", path, md->abi_major, md->abi_minor, md->n_routes);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static struct refused_file **refused_find(struct server *srv, const char *path)
{
    struct refused_file **p = &srv->refused;
    while (*p && strcmp((*p)->path, path) != 0) {
        p = &(*p)->next;
    }
    return p;
}

static void refused_drop(struct refused_file **p)
{
    struct refused_file *f = *p;
    if (f) {
        *p = f->next;
        free(f->path);
        free(f->error);
        free(f);
    }
}

static void refused_note(struct server *srv, const char *path, const struct stat *st, const char *err)
{
    struct refused_file **p = refused_find(srv, path);
    if (!*p) {
        *p = calloc(1, sizeof **p);
        if (!*p || !((*p)->path = strdup(path))) {
            free(*p);
            *p = NULL;
            return;
        }
    }
    (*p)->st = *st;
    free((*p)->error);
    (*p)->error = strdup(err);
}

/* One file of the directory: loaded, swapped in, unchanged (1, 0 or 0) or refused (-1). */
static int scan_file(struct server *srv, const char *path, bool reload)
{
    char err[512];
    struct stat st;
    if (stat(path, &st) < 0) {
        return 0;   /* renamed away since the listing */
    }
    struct gtm_mod *old = NULL;
    for (struct gtm_mod *m = srv->mods; reload && m; m = m->next) {
        if (m->live && m->src && strcmp(m->src, path) == 0) {
            old = m;
        }
    }
    if (old && same_file(&old->src_st, &st)) {
        return 0;
    }
    struct refused_file **refused = refused_find(srv, path);
    if (!old && *refused && same_file(&(*refused)->st, &st)) {
        return 0;   /* refused before and unchanged since */
    }
    if (!S_ISREG(st.st_mode)) {
        /* dlopen or the staged copy would open it: a FIFO blocks the loop for good */
        snprintf(err, sizeof err, "not a regular file");
    } else if (old ? module_swap(srv, old, path, &st, err, sizeof err) == 0
                   : module_load(srv, path, err, sizeof err) == 0) {
        if (!old) {
            module_set_source(srv->mods, path, &st);
            log_loaded(srv->mods, path);
        }
        refused_drop(refused);
        return 1;
    }
    log_msg(LOG_ERROR, NULL, NULL, "module %s refused%s: %s%s", base_name(path), reload ? " on reload" : "", err,
            old ? "; the running instance keeps serving" : "");
    /* said once per file version, not at every reload */
    if (old) {
        old->src_st = st;
        free(old->reload_error);
        old->reload_error = strdup(err);
    } else {
        refused_note(srv, path, &st, err);
    }
    return -1;
}

static int scan_dir(struct server *srv, const char *dir, bool reload)
{
    char **names;
    ssize_t n = list_modules(dir, &names);
    if (n < 0) {
        if (reload) {
            log_msg(LOG_ERROR, NULL, NULL, "reload: cannot read GTM_MODULE_DIR %s: %s", dir, strerror(errno));
        }
        return -1;
    }
    int done = 0;
    for (ssize_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        int rc = scan_file(srv, path, reload);
        done += rc > 0;
        if (reload && rc != 0) {
            *(rc > 0 ? &srv->module_reloads : &srv->module_reload_failures) += 1;
        }
    }
    free(names);
    return done;
}

int modules_load_dir(struct server *srv, const char *dir)
{
    return scan_dir(srv, dir, false);
}

int modules_reload_dir(struct server *srv, const char *dir)
{
    return scan_dir(srv, dir, true);
}

void modules_unload_all(struct server *srv)
{
    while (srv->refused) {
        refused_drop(&srv->refused);
    }
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
