#include "master.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

#define MASTER_MAX_WORKERS 256
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 5000
#define CRASH_WINDOW_MS 1000    /* a worker dying sooner than this is crash-looping */

struct worker_slot {
    pid_t pid;                  /* 0 when not running */
    uint64_t started_ms;
    uint64_t restart_at_ms;     /* when to start it again (0: not scheduled) */
    unsigned backoff_ms;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A listening socket the workers inherit; -1 after printing the reason. */
static int bind_listener(const struct listen_spec *spec, const char *var)
{
    int family = spec->addr.ss_family;
    int fd = socket(family, SOCK_STREAM, 0);
    int one = 1;
    socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)&spec->addr, len) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "gtmd: %s: cannot listen on %s: %s\n", var, spec->text, uv_strerror(-errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static pid_t spawn(struct config *cfg, worker_main_fn worker_main, const sigset_t *old_mask)
{
    pid_t pid = fork();
    if (pid != 0) {
        return pid;   /* the master, or -1 */
    }
    /* the worker: its own signals back, and gone when the master is */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) {
        _exit(0);   /* the master died before the line above */
    }
    signal(SIGHUP, SIG_IGN);   /* until the worker's loop takes it over */
    log_set_worker((int)getpid());
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    int rc = worker_main(cfg);
    log_flush();
    _exit(rc);
}

static void start_worker(struct worker_slot *w, struct config *cfg, worker_main_fn worker_main,
                         const sigset_t *old_mask)
{
    pid_t pid = spawn(cfg, worker_main, old_mask);
    if (pid < 0) {
        log_msg(LOG_ERROR, NULL, NULL, "cannot start a worker: %s; trying again", strerror(errno));
        w->restart_at_ms = mono_ms() + RESTART_MAX_MS;
        return;
    }
    w->pid = pid;
    w->started_ms = mono_ms();
    w->restart_at_ms = 0;
    log_msg(LOG_INFO, NULL, NULL, "worker %d started", (int)pid);
}

/* The master lets go of the listeners first, so that once the workers have
 * closed theirs a new client is refused rather than left in a dead backlog. */
static void stop_all(struct config *cfg, struct worker_slot *slots, int n)
{
    struct listen_spec *specs[] = {&cfg->listen, &cfg->tls_listen, &cfg->admin_listen};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        if (specs[i]->fd >= 0) {
            close(specs[i]->fd);
            specs[i]->fd = -1;
        }
    }
    for (int i = 0; i < n; i++) {
        if (slots[i].pid > 0) {
            kill(slots[i].pid, SIGTERM);
        }
        slots[i].restart_at_ms = 0;
    }
}

int master_run(struct config *cfg, worker_main_fn worker_main)
{
    int n = cfg->workers > MASTER_MAX_WORKERS ? MASTER_MAX_WORKERS : cfg->workers;
    cfg->listen.fd = bind_listener(&cfg->listen, "GTM_LISTEN");
    if (cfg->listen.fd < 0) {
        return 2;
    }
    if (cfg->tls_listen.set && (cfg->tls_listen.fd = bind_listener(&cfg->tls_listen, "GTM_TLS_LISTEN")) < 0) {
        return 2;
    }
    if (cfg->admin_listen.set && (cfg->admin_listen.fd = bind_listener(&cfg->admin_listen, "GTM_ADMIN_LISTEN")) < 0) {
        return 2;
    }
    sigset_t set, old_mask;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old_mask);

    struct worker_slot *slots = calloc((size_t)n, sizeof *slots);
    if (!slots) {
        fprintf(stderr, "gtmd: out of memory\n");
        return 1;
    }
    log_msg(LOG_INFO, NULL, NULL, "master %d starting %d workers", (int)getpid(), n);
    for (int i = 0; i < n; i++) {
        slots[i].backoff_ms = RESTART_MIN_MS;
        start_worker(&slots[i], cfg, worker_main, &old_mask);
    }
    bool stopping = false;
    int live = n, exit_code = 0;
    while (!stopping || live > 0) {
        uint64_t now = mono_ms(), wake = now + 1000;
        for (int i = 0; i < n; i++) {
            if (!stopping && slots[i].restart_at_ms && slots[i].restart_at_ms <= now) {
                start_worker(&slots[i], cfg, worker_main, &old_mask);
                live += slots[i].pid > 0;
            }
            if (slots[i].restart_at_ms && slots[i].restart_at_ms < wake) {
                wake = slots[i].restart_at_ms;
            }
        }
        uint64_t wait_ms = wake > now ? wake - now : 0;
        struct timespec tmo = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &tmo);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                log_msg(LOG_INFO, NULL, NULL, "%s: stopping %d workers gracefully", sig == SIGINT ? "SIGINT" : "SIGTERM",
                        live);
            }
            stopping = true;
            stop_all(cfg, slots, n);
        } else if (sig == SIGHUP && !stopping) {
            log_msg(LOG_INFO, NULL, NULL, "SIGHUP: each worker reloads the modules that changed");
            for (int i = 0; i < n; i++) {
                if (slots[i].pid > 0) {
                    kill(slots[i].pid, SIGHUP);
                }
            }
        }
        /* SIGCHLD, or any wake-up: reap every worker that has ended */
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < n; i++) {
                if (slots[i].pid != pid) {
                    continue;
                }
                slots[i].pid = 0;
                live--;
                if (stopping) {
                    break;
                }
                if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
                    /* it refused its settings or modules: every restart would too */
                    log_msg(LOG_ERROR, NULL, NULL, "worker %d could not start (see above); stopping the others", (int)pid);
                    stop_all(cfg, slots, n);
                    stopping = true;
                    exit_code = 2;
                    break;
                }
                uint64_t lived = mono_ms() - slots[i].started_ms;
                slots[i].backoff_ms = lived < CRASH_WINDOW_MS
                                          ? (slots[i].backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : slots[i].backoff_ms * 2)
                                          : RESTART_MIN_MS;
                slots[i].restart_at_ms = mono_ms() + slots[i].backoff_ms;
                if (WIFSIGNALED(status)) {
                    log_msg(LOG_ERROR, NULL, NULL, "worker %d killed by signal %d; a new one starts in %u ms", (int)pid,
                            WTERMSIG(status), slots[i].backoff_ms);
                } else {
                    log_msg(LOG_ERROR, NULL, NULL, "worker %d exited with status %d; a new one starts in %u ms", (int)pid,
                            WEXITSTATUS(status), slots[i].backoff_ms);
                }
                break;
            }
        }
    }
    free(slots);
    log_msg(LOG_INFO, NULL, NULL, "master stopped");
    return exit_code;
}
