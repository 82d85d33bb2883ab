/* libFuzzer target: page text for the model (core/site): HTML through
 * gumbo and the boilerplate filter, Firecrawl's markdown, plain text.
 * Input: a mode byte, then the page.
 *   bits 0-1   0, 1: HTML (site_html_to_text); 2: markdown; 3: plain text
 *   bits 2-3   MAX_CONTENT_LENGTH: 20000, 200, 13 or 1 characters
 * What must hold: an answer (never NULL), exactly out_len bytes with no NUL,
 * valid UTF-8, at most MAX_CONTENT_LENGTH code points, one line per block
 * with no empty line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "site/site.h"
#include "site/site_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t utf8_chars(const unsigned char *s, size_t n, int *bad)
{
    size_t i = 0, cps = 0;
    *bad = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n || (len == 2 && c < 0xc2) || (len == 4 && c > 0xf4)) {
            *bad = 1;
            return cps;
        }
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                *bad = 1;
                return cps;
            }
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            *bad = 1;
            return cps;
        }
        i += len;
        cps++;
    }
    return cps;
}

static void fail(const char *why, const uint8_t *in, size_t len, const char *out, size_t out_len)
{
    fprintf(stderr, "\n==fuzz== %s\n==fuzz== input (%zu bytes): %.*s\n==fuzz== text (%zu bytes): %.*s\n", why, len,
            (int)(len > 2000 ? 2000 : len), (const char *)in, out_len, (int)(out_len > 2000 ? 2000 : out_len),
            out ? out : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    static const size_t caps[4] = {20000, 200, 13, 1};
    unsigned mode = data[0] & 3;
    size_t max_chars = caps[(data[0] >> 2) & 3];
    const char *page = (const char *)data + 1;
    size_t len = size - 1;
    size_t out_len = (size_t)-1;
    char *out = mode < 2   ? site_html_to_text(page, len, max_chars, &out_len)
                : mode == 2 ? site_markdown_to_text(page, len, max_chars, &out_len)
                            : site_plain_to_text(page, len, max_chars, &out_len);
    if (!out) {
        fail("no text at all (NULL)", data, size, NULL, 0);
    }
    if (out_len == (size_t)-1 || strlen(out) != out_len) {
        fail("out_len is not the text's length (or it holds a NUL)", data, size, out, out_len);
    }
    int bad;
    size_t chars = utf8_chars((const unsigned char *)out, out_len, &bad);
    if (bad) {
        fail("the text is not valid UTF-8", data, size, out, out_len);
    }
    if (chars > max_chars) {
        fail("the text is longer than MAX_CONTENT_LENGTH", data, size, out, out_len);
    }
    if (out_len && (out[0] == '\n' || out[out_len - 1] == '\n' || strstr(out, "\n\n"))) {
        fail("the text has an empty line", data, size, out, out_len);
    }
    free(out);
    return 0;
}
