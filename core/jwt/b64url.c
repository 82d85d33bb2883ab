/* Strict unpadded base64url decoding. */
#include "jwt/b64url.h"

#include <stdint.h>

/* 0..63 for the alphabet, -1 for everything else (including '=', '+', '/',
 * whitespace and NUL), so one lookup rejects all foreign bytes. */
static int sextet_of(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t b64url_decoded_len(size_t len)
{
    size_t tail = len % 4;
    if (tail == 1)
        return (size_t)-1;
    return len / 4 * 3 + (tail ? tail - 1 : 0);
}

int b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen)
{
    size_t need = b64url_decoded_len(len);
    if (need == (size_t)-1 || need > outcap || (len > 0 && in == NULL))
        return -1;

    uint32_t acc = 0;       /* bits not yet written, right-aligned */
    unsigned acc_bits = 0;
    size_t written = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sextet_of((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        acc_bits += 6;
        if (acc_bits >= 8) {
            acc_bits -= 8;
            out[written++] = (unsigned char)(acc >> acc_bits);
            acc &= (1u << acc_bits) - 1;
        }
    }
    /* The 2 or 4 bits left over must be zero: otherwise several spellings
     * would decode to the same bytes. */
    if (acc != 0)
        return -1;
    if (outlen != NULL)
        *outlen = written;
    return 0;
}
