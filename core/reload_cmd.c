/* gtmd reload: asks the running gtmd, through its admin listener, to reload
 * the modules that changed (as SIGHUP to the master does).  A command-line
 * tool, so plain blocking sockets. */
#include "reload_cmd.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int reload_command(void)
{
    struct config cfg;
    if (config_load_cli(&cfg) != 0) {
        return 2;
    }
    int rc = 1;
    if (!cfg.admin_listen.set) {
        fprintf(stderr, "gtmd reload: GTM_ADMIN_LISTEN is off, so there is nothing to ask; "
                        "send SIGHUP to the gtmd master process instead\n");
        config_free(&cfg);
        return 2;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&cfg.admin_listen.addr;
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {10, 0};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 || connect(fd, sa, len) < 0) {
        fprintf(stderr, "gtmd reload: no gtmd answers on GTM_ADMIN_LISTEN %s: %s\n", cfg.admin_listen.text,
                strerror(errno));
        goto out;
    }
    static const char req[] = "POST /admin/reload HTTP/1.1\r\nHost: gtmd\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n";
    char resp[8192];
    size_t have = 0;
    if (send_all(fd, req, sizeof req - 1) < 0) {
        fprintf(stderr, "gtmd reload: cannot send to %s: %s\n", cfg.admin_listen.text, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = recv(fd, resp + have, sizeof resp - 1 - have, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fprintf(stderr, "gtmd reload: no answer from %s: %s\n", cfg.admin_listen.text, strerror(errno));
            goto out;
        }
        if (n == 0 || (have += (size_t)n) == sizeof resp - 1) {
            break;
        }
    }
    resp[have] = '\0';
    int status = 0;
    const char *body = strstr(resp, "\r\n\r\n");
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1 || !body) {
        fprintf(stderr, "gtmd reload: %s did not answer in HTTP\n", cfg.admin_listen.text);
        goto out;
    }
    body += 4;
    if (status == 202) {
        printf("%s\n", body);
        printf("reload asked; each worker logs what it loaded or refused, and GET /health/detailed on %s "
               "shows each module's generation and any reload_error\n",
               cfg.admin_listen.text);
        rc = 0;
    } else {
        fprintf(stderr, "gtmd reload: %s answered %d: %s\n", cfg.admin_listen.text, status, body);
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    config_free(&cfg);
    return rc;
}
