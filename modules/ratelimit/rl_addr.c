/* Client addresses: GTM_TRUSTED_PROXIES and X-Forwarded-For. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define ADDR_TEXT_MAX 64   /* longer than any address text with a zone or port */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4_mapped(const struct rl_addr *a)
{
    return memcmp(a->b, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0;
}

bool rl_addr_parse(const char *s, size_t len, struct rl_addr *out)
{
    char text[ADDR_TEXT_MAX];
    if (len == 0 || len >= sizeof text) {
        return false;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, text, &v4) == 1) {
        memcpy(out->b, v4_mapped_prefix, sizeof v4_mapped_prefix);
        memcpy(out->b + 12, &v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, text, out->b) == 1;
}

void rl_addr_format(const struct rl_addr *a, char *out, size_t outlen)
{
    const char *ok;
    if (is_v4_mapped(a)) {
        ok = inet_ntop(AF_INET, a->b + 12, out, (socklen_t)outlen);
    } else {
        ok = inet_ntop(AF_INET6, a->b, out, (socklen_t)outlen);
    }
    if (!ok && outlen) {
        snprintf(out, outlen, "unknown");
    }
}

static const char *trim(const char *s, const char *end, const char **tend)
{
    while (s < end && (*s == ' ' || *s == '\t')) {
        s++;
    }
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    *tend = end;
    return s;
}

static bool all_digits(const char *s, const char *end)
{
    if (s == end) {
        return false;
    }
    for (; s < end; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

/* One X-Forwarded-For entry: an address, "[v6]", "[v6]:port" or "v4:port"
 * (some proxies append the port). */
static bool parse_forwarded_entry(const char *s, const char *end, struct rl_addr *out)
{
    s = trim(s, end, &end);
    if (s < end && *s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (!close || (close + 1 != end && !(close[1] == ':' && all_digits(close + 2, end)))) {
            return false;
        }
        return rl_addr_parse(s + 1, (size_t)(close - s - 1), out);
    }
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (colon && !memchr(colon + 1, ':', (size_t)(end - colon - 1)) && memchr(s, '.', (size_t)(colon - s))) {
        if (!all_digits(colon + 1, end)) {
            return false;
        }
        end = colon;
    }
    return rl_addr_parse(s, (size_t)(end - s), out);
}

static int parse_net(const char *s, const char *end, struct rl_net *out)
{
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *addr_end = slash ? slash : end;
    if (!rl_addr_parse(s, (size_t)(addr_end - s), &out->addr)) {
        return -1;
    }
    bool v4 = is_v4_mapped(&out->addr);
    unsigned max = v4 ? 32 : 128;
    unsigned prefix = max;
    if (slash) {
        if (!all_digits(slash + 1, end) || end - slash - 1 > 3) {
            return -1;
        }
        prefix = (unsigned)atoi(slash + 1);
        if (prefix > max) {
            return -1;
        }
    }
    out->prefix = v4 ? prefix + 96 : prefix;
    /* host bits are cleared so that matching compares prefixes only */
    for (unsigned bit = out->prefix; bit < 128; bit++) {
        out->addr.b[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    }
    return 0;
}

int rl_proxies_parse(const char *spec, struct rl_proxies *out, char *why, size_t whylen)
{
    out->nets = NULL;
    out->n = 0;
    if (!spec) {
        return 0;
    }
    size_t cap = 1;
    for (const char *p = spec; *p; p++) {
        cap += *p == ',';
    }
    out->nets = calloc(cap, sizeof *out->nets);
    if (!out->nets) {
        snprintf(why, whylen, "GTM_TRUSTED_PROXIES: out of memory");
        return -1;
    }
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *tend;
        const char *s = trim(p, end, &tend);
        if (s < tend) {
            if (parse_net(s, tend, &out->nets[out->n]) < 0) {
                snprintf(why, whylen,
                         "GTM_TRUSTED_PROXIES: '%.*s' is not an IP address or CIDR (e.g. 10.0.0.1, 10.0.0.0/8, fd00::/8)",
                         (int)(tend - s > 80 ? 80 : tend - s), s);
                rl_proxies_free(out);
                return -1;
            }
            out->n++;
        }
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    return 0;
}

void rl_proxies_free(struct rl_proxies *p)
{
    free(p->nets);
    p->nets = NULL;
    p->n = 0;
}

static bool net_contains(const struct rl_net *net, const struct rl_addr *a)
{
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr.b, a->b, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a->b[full] & mask) == net->addr.b[full];
}

bool rl_proxies_contain(const struct rl_proxies *p, const struct rl_addr *a)
{
    for (size_t i = 0; i < p->n; i++) {
        if (net_contains(&p->nets[i], a)) {
            return true;
        }
    }
    return false;
}

void rl_client_ip(const struct rl_proxies *trusted, const char *peer, const char *forwarded_for, char *out,
                  size_t outlen)
{
    struct rl_addr peer_addr;
    if (!peer || !rl_addr_parse(peer, strlen(peer), &peer_addr)) {
        snprintf(out, outlen, "unknown");
        return;
    }
    const struct rl_addr *chosen = &peer_addr;
    struct rl_addr entry, leftmost;
    bool have_leftmost = false;
    if (forwarded_for && trusted->n && rl_proxies_contain(trusted, &peer_addr)) {
        /* Right to left: each hop we trust vouches for the one before it; the
         * first hop we do not trust is the client as far as we can tell. */
        const char *end = forwarded_for + strlen(forwarded_for);
        while (end > forwarded_for) {
            const char *start = end;
            while (start > forwarded_for && start[-1] != ',') {
                start--;
            }
            if (parse_forwarded_entry(start, end, &entry)) {
                if (!rl_proxies_contain(trusted, &entry)) {
                    chosen = &entry;
                    break;
                }
                leftmost = entry;
                have_leftmost = true;
            }
            end = start > forwarded_for ? start - 1 : start;
        }
        if (chosen == &peer_addr && have_leftmost) {
            chosen = &leftmost;
        }
    }
    rl_addr_format(chosen, out, outlen);
}
