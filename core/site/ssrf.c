/* The SSRF guard's address classes: which addresses the built-in fetcher may
 * connect to.  Called from libcurl's open-socket callback with each resolved
 * address, so it must be quick and must not touch curl. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "site/site.h"
#include "site/site_internal.h"

/* An IPv4 network: address and prefix length. */
struct v4_net {
    uint32_t net;
    unsigned bits;
};

static const struct v4_net forbidden_v4[] = {
    {0x00000000u, 8},  /* 0.0.0.0/8 "this network" (0.0.0.0 reaches the local host) */
    {0x0a000000u, 8},  /* 10/8 private */
    {0x64400000u, 10}, /* 100.64/10 carrier-grade NAT */
    {0x7f000000u, 8},  /* 127/8 loopback */
    {0xa9fe0000u, 16}, /* 169.254/16 link-local, cloud metadata (169.254.169.254) */
    {0xac100000u, 12}, /* 172.16/12 private */
    {0xc0000000u, 24}, /* 192.0.0/24 IETF protocol assignments */
    {0xc0a80000u, 16}, /* 192.168/16 private */
    {0xc6120000u, 15}, /* 198.18/15 benchmarking */
    {0xe0000000u, 3},  /* 224/4 multicast and 240/4 reserved, broadcast included */
};

static bool v4_in(uint32_t addr, const struct v4_net *n) {
    uint32_t mask = n->bits ? 0xffffffffu << (32 - n->bits) : 0;
    return (addr & mask) == n->net;
}

static bool v4_forbidden(uint32_t addr) {
    for (size_t i = 0; i < sizeof(forbidden_v4) / sizeof(forbidden_v4[0]); i++)
        if (v4_in(addr, &forbidden_v4[i]))
            return true;
    return false;
}

static uint32_t v4_at(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static bool all_zero(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static bool v6_forbidden(const uint8_t a[16]) {
    if (all_zero(a, 15) && (a[15] == 0 || a[15] == 1))
        return true; /* :: and ::1 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return true; /* fe80::/10 link-local */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        return true; /* fec0::/10, the deprecated site-local */
    if ((a[0] & 0xfe) == 0xfc)
        return true; /* fc00::/7 unique-local */
    if (a[0] == 0xff)
        return true; /* ff00::/8 multicast */
    /* Forms that carry an IPv4 address which the host or a translator will
     * reach: judge the IPv4 address. */
    if (all_zero(a, 10) && a[10] == 0xff && a[11] == 0xff)
        return v4_forbidden(v4_at(a + 12)); /* ::ffff:a.b.c.d mapped */
    if (all_zero(a, 12))
        return v4_forbidden(v4_at(a + 12)); /* ::a.b.c.d compatible (deprecated) */
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a, nat64, 12) == 0)
        return v4_forbidden(v4_at(a + 12)); /* 64:ff9b::/96 NAT64 */
    return false;
}

/* ---- the allow list -------------------------------------------------------- */

/* An address as 16 bytes (IPv4 in its mapped form) and a port. */
struct endpoint {
    uint8_t addr[16];
    unsigned port;
};

static void mapped_v4(uint32_t be_addr, uint8_t out[16]) {
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, &be_addr, 4);
}

static bool endpoint_of(const struct sockaddr *sa, struct endpoint *ep) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        mapped_v4(in->sin_addr.s_addr, ep->addr);
        ep->port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(ep->addr, in6->sin6_addr.s6_addr, 16);
        ep->port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

#define ALLOW_HOST_MAX 64

/* One "host:port" entry: the addresses it stands for (localhost is two). */
struct allow_entry {
    uint8_t addrs[2][16];
    size_t n_addrs;
    unsigned port;
};

/* Parses entry [s, s+len).  0, or -1 with a reason. */
static int parse_entry(const char *s, size_t len, struct allow_entry *e, char *err, size_t errlen) {
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    int shown = (int)(len > 64 ? 64 : len);
    const char *colon = NULL, *host_start = s;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || close + 1 >= s + len || close[1] != ':') {
            snprintf(err, errlen, "\"%.*s\" is not [ipv6]:port", shown, s);
            return -1;
        }
        host_start = s + 1;
        colon = close + 1;
    } else {
        for (size_t i = len; i > 0 && !colon; i--)
            if (s[i - 1] == ':')
                colon = s + i - 1;
        if (!colon) {
            snprintf(err, errlen, "\"%.*s\" has no :port", shown, s);
            return -1;
        }
        if (memchr(s, ':', (size_t)(colon - s))) {
            /* "::1:8080" could be an address or an address and a port */
            snprintf(err, errlen, "\"%.*s\": write IPv6 addresses in brackets, [::1]:8080", shown, s);
            return -1;
        }
    }
    char host[ALLOW_HOST_MAX];
    size_t host_len = (size_t)(colon - host_start) - (s[0] == '[' ? 1 : 0);
    if (host_len == 0 || host_len >= sizeof(host)) {
        snprintf(err, errlen, "\"%.*s\" has no usable host", shown, s);
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';

    unsigned long port = 0;
    const char *p = colon + 1, *end = s + len;
    bool port_ok = p < end && end - p <= 5;
    for (; port_ok && p < end; p++) {
        port_ok = *p >= '0' && *p <= '9';
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (!port_ok || port == 0 || port > 65535) {
        snprintf(err, errlen, "\"%.*s\" has no port in 1..65535", shown, s);
        return -1;
    }
    e->port = (unsigned)port;

    struct in_addr v4;
    struct in6_addr v6;
    e->n_addrs = 0;
    if (strcasecmp(host, "localhost") == 0) {
        mapped_v4(htonl(INADDR_LOOPBACK), e->addrs[0]);
        memcpy(e->addrs[1], in6addr_loopback.s6_addr, 16);
        e->n_addrs = 2;
    } else if (inet_pton(AF_INET, host, &v4) == 1) {
        mapped_v4(v4.s_addr, e->addrs[0]);
        e->n_addrs = 1;
    } else if (inet_pton(AF_INET6, host, &v6) == 1) {
        memcpy(e->addrs[0], v6.s6_addr, 16);
        e->n_addrs = 1;
    } else {
        snprintf(err, errlen, "\"%s\" is neither an IP address nor localhost", host);
        return -1;
    }
    return 0;
}

/* Calls visit for each entry of list until it returns true; -1 on a bad entry. */
static int each_entry(const char *list, bool (*visit)(const struct allow_entry *e, void *arg), void *arg,
                      char *err, size_t errlen) {
    const char *p = list;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        bool blank = true;
        for (size_t i = 0; i < len; i++)
            blank &= p[i] == ' ' || p[i] == '\t';
        if (!blank) {
            struct allow_entry e;
            if (parse_entry(p, len, &e, err, errlen) < 0)
                return -1;
            if (visit(&e, arg))
                return 1;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

static bool entry_matches(const struct allow_entry *e, void *arg) {
    const struct endpoint *ep = arg;
    if (e->port != ep->port)
        return false;
    for (size_t i = 0; i < e->n_addrs; i++)
        if (memcmp(e->addrs[i], ep->addr, 16) == 0)
            return true;
    return false;
}

static bool accept_any(const struct allow_entry *e, void *arg) {
    (void)e;
    (void)arg;
    return false;
}

int site_fetch_allow_check(const char *list, char *err, size_t errlen) {
    char why[160] = "";
    if (each_entry(list, accept_any, NULL, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

int site_address_allowed(const struct site_config *cfg, const struct sockaddr *sa) {
    struct endpoint ep;
    if (!cfg || !sa || !endpoint_of(sa, &ep))
        return 0;
    char why[160];
    if (cfg->fetch_allow[0] && each_entry(cfg->fetch_allow, entry_matches, &ep, why, sizeof(why)) == 1)
        return 1;
    if (cfg->allow_private)
        return 1;
    if (sa->sa_family == AF_INET)
        return !v4_forbidden(v4_at(ep.addr + 12));
    return !v6_forbidden(ep.addr);
}
