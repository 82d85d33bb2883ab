/* The line filter every text path ends in, keeping the upstream's cleaning
 * intent (upstream-behaviour.md §6.5): whitespace collapsed, blank lines
 * dropped, and lines that are nothing but navigation, cookie, legal, social
 * or form boilerplate dropped whole.  The upstream deleted those phrases
 * anywhere with regexes; deleting whole lines keeps sentences that merely
 * mention "privacy policy" intact.  Then the cap, in code points. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "site/site_internal.h"

/* ---- UTF-8 ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (its code point in *cp), or 0. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    if (!len)
        return 0;
    unsigned char b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t n;
    uint32_t min, c;
    if ((b & 0xe0) == 0xc0) {
        n = 2, min = 0x80, c = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
        n = 3, min = 0x800, c = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
        n = 4, min = 0x10000, c = b & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

char *text_utf8_sanitize(const char *in, size_t len, size_t *out_len) {
    const unsigned char *s = (const unsigned char *)in;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = s[i] ? utf8_decode(s + i, len - i, &cp) : 0;
        bad += n == 0;
        i += n ? n : 1;
    }
    if (bad > (SIZE_MAX - len - 1) / 2)
        return NULL;
    char *out = malloc(len + 2 * bad + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = s[i] ? utf8_decode(s + i, len - i, &cp) : 0;
        if (n) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, replacement, 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

/* Characters that render as a space, and ones that render as nothing. */
static bool is_space_cp(uint32_t c) {
    return c <= 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

static bool is_invisible_cp(uint32_t c) {
    return c == 0x200b || c == 0xfeff || c == 0xad || c == 0x2060;
}

/* ---- boilerplate --------------------------------------------------------- */

enum phrase_kind {
    PHRASE_STRONG, /* boilerplate wherever it stands alone */
    PHRASE_NAV,    /* a menu entry: boilerplate in a row of three or more */
    PHRASE_FORM,   /* a form label: boilerplate with a '*' or a trailing ':' */
};

struct phrase {
    const char *words; /* lower case, single spaces */
    enum phrase_kind kind;
};

/* Words are what is left after punctuation becomes a separator, so
 * "Terms & Conditions" is "terms conditions" and "Search for:" "search for". */
static const struct phrase phrases[] = {
    {"skip to content", PHRASE_STRONG},
    {"skip to main content", PHRASE_STRONG},
    {"skip to navigation", PHRASE_STRONG},
    {"skip navigation", PHRASE_STRONG},
    {"jump to content", PHRASE_STRONG},
    {"menu toggle", PHRASE_STRONG},
    {"toggle menu", PHRASE_STRONG},
    {"toggle navigation", PHRASE_STRONG},
    {"open menu", PHRASE_STRONG},
    {"close menu", PHRASE_STRONG},
    {"main menu", PHRASE_STRONG},
    {"search for", PHRASE_STRONG},
    {"cookie policy", PHRASE_STRONG},
    {"cookies policy", PHRASE_STRONG},
    {"cookie settings", PHRASE_STRONG},
    {"cookie preferences", PHRASE_STRONG},
    {"manage cookies", PHRASE_STRONG},
    {"accept cookies", PHRASE_STRONG},
    {"accept all cookies", PHRASE_STRONG},
    {"privacy policy", PHRASE_STRONG},
    {"privacy notice", PHRASE_STRONG},
    {"privacy statement", PHRASE_STRONG},
    {"terms of service", PHRASE_STRONG},
    {"terms of use", PHRASE_STRONG},
    {"terms and conditions", PHRASE_STRONG},
    {"terms conditions", PHRASE_STRONG},
    {"all rights reserved", PHRASE_STRONG},
    {"follow us on", PHRASE_STRONG},
    {"follow us", PHRASE_STRONG},
    {"subscribe to our newsletter", PHRASE_STRONG},
    {"sign up for updates", PHRASE_STRONG},
    {"sign up for our newsletter", PHRASE_STRONG},
    {"your email address", PHRASE_STRONG},
    {"enter your email", PHRASE_STRONG},
    {"back to top", PHRASE_STRONG},
    {"scroll to top", PHRASE_STRONG},
    {"legal notice", PHRASE_STRONG},
    {"imprint", PHRASE_STRONG},
    {"sitemap", PHRASE_STRONG},
    {"accessibility statement", PHRASE_STRONG},
    {"do not sell my personal information", PHRASE_STRONG},
    {"home", PHRASE_NAV},
    {"about", PHRASE_NAV},
    {"about us", PHRASE_NAV},
    {"services", PHRASE_NAV},
    {"products", PHRASE_NAV},
    {"solutions", PHRASE_NAV},
    {"features", PHRASE_NAV},
    {"pricing", PHRASE_NAV},
    {"contact", PHRASE_NAV},
    {"contact us", PHRASE_NAV},
    {"blog", PHRASE_NAV},
    {"news", PHRASE_NAV},
    {"careers", PHRASE_NAV},
    {"jobs", PHRASE_NAV},
    {"team", PHRASE_NAV},
    {"company", PHRASE_NAV},
    {"resources", PHRASE_NAV},
    {"support", PHRASE_NAV},
    {"help", PHRASE_NAV},
    {"faq", PHRASE_NAV},
    {"docs", PHRASE_NAV},
    {"login", PHRASE_NAV},
    {"log in", PHRASE_NAV},
    {"sign in", PHRASE_NAV},
    {"sign up", PHRASE_NAV},
    {"register", PHRASE_NAV},
    {"menu", PHRASE_NAV},
    {"search", PHRASE_NAV},
    {"privacy", PHRASE_NAV},
    {"terms", PHRASE_NAV},
    {"legal", PHRASE_NAV},
    {"cookies", PHRASE_NAV},
    {"facebook", PHRASE_NAV},
    {"twitter", PHRASE_NAV},
    {"x", PHRASE_NAV},
    {"linkedin", PHRASE_NAV},
    {"instagram", PHRASE_NAV},
    {"youtube", PHRASE_NAV},
    {"tiktok", PHRASE_NAV},
    {"github", PHRASE_NAV},
    {"name", PHRASE_FORM},
    {"first name", PHRASE_FORM},
    {"last name", PHRASE_FORM},
    {"full name", PHRASE_FORM},
    {"email", PHRASE_FORM},
    {"e mail", PHRASE_FORM},
    {"email address", PHRASE_FORM},
    {"phone", PHRASE_FORM},
    {"subject", PHRASE_FORM},
    {"message", PHRASE_FORM},
    {"your message", PHRASE_FORM},
};

#define MAX_LINE_WORDS 24 /* longer lines are prose, never boilerplate */

struct word {
    const char *p;
    size_t len;
};

/* Punctuation that separates words, including the typographic ones menus
 * and footers use (bullets, dashes, guillemets, arrows, the copyright sign). */
static bool is_separator_cp(uint32_t c) {
    if (c < 0x80)
        return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
    return is_space_cp(c) || c == 0xa9 || c == 0xae || c == 0xab || c == 0xbb || c == 0xb7 ||
           (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205e) || (c >= 0x2190 && c <= 0x21ff) ||
           (c >= 0x2500 && c <= 0x25ff) || c == 0x2122;
}

/* Splits the line into lower-cased words in lowered (same length as line).
 * Returns the count, or MAX_LINE_WORDS + 1 when there are more. */
static size_t split_words(const char *line, size_t len, char *lowered, struct word *words) {
    size_t n = 0, i = 0;
    const unsigned char *s = (const unsigned char *)line;
    for (size_t k = 0; k < len; k++)
        lowered[k] = (line[k] >= 'A' && line[k] <= 'Z') ? (char)(line[k] - 'A' + 'a') : line[k];
    while (i < len) {
        uint32_t cp = 0xfffd;
        size_t step = utf8_decode(s + i, len - i, &cp);
        if (!step)
            step = 1;
        if (is_separator_cp(cp)) {
            i += step;
            continue;
        }
        size_t start = i;
        while (i < len) {
            step = utf8_decode(s + i, len - i, &cp);
            if (!step)
                step = 1, cp = 0xfffd;
            if (is_separator_cp(cp))
                break;
            i += step;
        }
        if (n == MAX_LINE_WORDS)
            return MAX_LINE_WORDS + 1;
        words[n].p = lowered + start;
        words[n].len = i - start;
        n++;
    }
    return n;
}

/* Words of the phrase matched at words[at..]: their count, or 0. */
static size_t phrase_match(const struct phrase *ph, const struct word *words, size_t n, size_t at) {
    const char *w = ph->words;
    size_t k = 0;
    while (*w) {
        const char *sp = strchr(w, ' ');
        size_t wl = sp ? (size_t)(sp - w) : strlen(w);
        if (at + k >= n || words[at + k].len != wl || memcmp(words[at + k].p, w, wl) != 0)
            return 0;
        k++;
        w += wl + (sp ? 1 : 0);
    }
    return k;
}

static bool is_year(const struct word *w) {
    if (w->len != 4)
        return false;
    for (size_t i = 0; i < 4; i++)
        if (w->p[i] < '0' || w->p[i] > '9')
            return false;
    return true;
}

/* "@acme #launch": a line of handles and hashtags only. */
static bool only_handles(const char *line, size_t len) {
    size_t i = 0, tokens = 0;
    while (i < len) {
        while (i < len && line[i] == ' ')
            i++;
        if (i >= len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        if ((line[start] != '@' && line[start] != '#') || i - start < 2)
            return false;
        unsigned char second = (unsigned char)line[start + 1];
        if (!(second >= 0x80 || (second >= '0' && second <= '9') || ((second | 0x20) >= 'a' && (second | 0x20) <= 'z')))
            return false;
        tokens++;
    }
    return tokens > 0;
}

static bool starts_with(const char *line, size_t len, const char *prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(line, prefix, n) == 0;
}

/* True when the words are a sequence of boilerplate phrases (longest match
 * first); counts them by kind. */
static bool covered_by_phrases(const struct word *words, size_t n, size_t *strong, size_t *nav, size_t *form) {
    *strong = *nav = *form = 0;
    for (size_t at = 0; at < n;) {
        size_t best = 0;
        enum phrase_kind kind = PHRASE_NAV;
        for (size_t p = 0; p < sizeof(phrases) / sizeof(phrases[0]); p++) {
            size_t k = phrase_match(&phrases[p], words, n, at);
            if (k > best) {
                best = k;
                kind = phrases[p].kind;
            }
        }
        if (!best)
            return false; /* a word no boilerplate phrase explains */
        *strong += kind == PHRASE_STRONG;
        *nav += kind == PHRASE_NAV;
        *form += kind == PHRASE_FORM;
        at += best;
    }
    return true;
}

bool text_is_boilerplate_line(const char *line, size_t len) {
    if (!len)
        return true;
    if (only_handles(line, len))
        return true;
    if (starts_with(line, len, "\xc2\xa9")) /* "© 2024 Acme" */
        return true;
    if (len > 256)
        return false;
    char lowered[256];
    struct word words[MAX_LINE_WORDS];
    size_t n = split_words(line, len, lowered, words);
    if (n == 0 || n > MAX_LINE_WORDS)
        return false;

    /* "Copyright © 2024 Acme", "Copyright 2024 Acme": the upstream deleted
     * "Copyright ©" to the end of the line. */
    if (words[0].len == 9 && memcmp(words[0].p, "copyright", 9) == 0) {
        if (memmem(line, len, "\xc2\xa9", 2) || memmem(lowered, len, "(c)", 3) || (n > 1 && is_year(&words[1])))
            return true;
    }

    /* "Acme © 2024. All rights reserved." */
    if (n <= 12) {
        bool has_year = false;
        for (size_t i = 0; i < n; i++)
            has_year |= is_year(&words[i]);
        if (has_year && memmem(line, len, "\xc2\xa9", 2))
            return true;
        for (size_t i = 0; i + 3 <= n; i++)
            if (phrase_match(&(struct phrase){"all rights reserved", PHRASE_STRONG}, words, n, i))
                return true;
    }

    size_t strong, nav, form;
    if (!covered_by_phrases(words, n, &strong, &nav, &form))
        return false;
    if (strong)
        return true;
    if (form && !nav)
        return memchr(line, '*', len) != NULL || line[len - 1] == ':';
    return nav >= 3 && !form;
}

bool text_is_menu_entry(const char *line, size_t len) {
    char lowered[256];
    struct word words[MAX_LINE_WORDS];
    if (!len || len > sizeof(lowered))
        return false;
    size_t n = split_words(line, len, lowered, words);
    size_t strong, nav, form;
    return n && n <= MAX_LINE_WORDS && covered_by_phrases(words, n, &strong, &nav, &form) && !form;
}

/* ---- the sink -------------------------------------------------------------- */

void text_sink_init(struct text_sink *s, size_t max_chars) {
    memset(s, 0, sizeof(*s));
    s->max_chars = max_chars;
}

void text_sink_free(struct text_sink *s) {
    free(s->buf);
    free(s->scratch);
    memset(s, 0, sizeof(*s));
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 256;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return false;
        n *= 2;
    }
    char *p = realloc(*buf, n);
    if (!p)
        return false;
    *buf = p;
    *cap = n;
    return true;
}

/* The line with whitespace collapsed and trimmed, invisible characters gone,
 * into s->scratch.  Returns its length in bytes; *chars gets code points. */
static size_t collapse(struct text_sink *s, const char *line, size_t len, size_t *chars) {
    const unsigned char *in = (const unsigned char *)line;
    size_t o = 0, cps = 0;
    bool pending_space = false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(in + i, len - i, &cp);
        const char *bytes = line + i;
        if (!n) {
            cp = 0xfffd;
            bytes = replacement;
            n = 1;
        }
        size_t width = bytes == replacement ? 3 : n;
        i += n;
        if (is_space_cp(cp)) {
            pending_space = o > 0;
            continue;
        }
        if (is_invisible_cp(cp))
            continue;
        if (pending_space) {
            s->scratch[o++] = ' ';
            cps++;
            pending_space = false;
        }
        memcpy(s->scratch + o, bytes, width);
        o += width;
        cps++;
    }
    *chars = cps;
    return o;
}

/* Bytes of the first n code points of a valid UTF-8 string. */
static size_t prefix_bytes(const char *s, size_t len, size_t n) {
    size_t i = 0;
    while (i < len && n) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
        n--;
    }
    return i;
}

bool text_sink_line(struct text_sink *s, const char *line, size_t len) {
    if (s->full || s->failed)
        return false;
    /* Each invalid byte may become the 3 bytes of U+FFFD. */
    if (len > (SIZE_MAX - 1) / 3 || !grow(&s->scratch, &s->scratch_cap, len * 3 + 1)) {
        s->failed = true;
        return false;
    }
    size_t chars;
    size_t n = collapse(s, line, len, &chars);
    if (!n || text_is_boilerplate_line(s->scratch, n))
        return true;

    bool separator = s->len > 0;
    if (s->chars + (separator ? 1 : 0) >= s->max_chars) {
        s->full = true; /* not even one character of this line fits */
        return false;
    }
    size_t room = s->max_chars - s->chars - (separator ? 1 : 0);
    size_t take = n;
    if (chars > room) {
        take = prefix_bytes(s->scratch, n, room);
        while (take && s->scratch[take - 1] == ' ')
            take--;
        chars = room;
        s->full = true;
    }
    if (!grow(&s->buf, &s->cap, s->len + take + 2)) {
        s->failed = true;
        return false;
    }
    if (separator) {
        s->buf[s->len++] = '\n';
        s->chars++;
    }
    memcpy(s->buf + s->len, s->scratch, take);
    s->len += take;
    s->chars += chars;
    s->buf[s->len] = '\0';
    return !s->full;
}

char *text_sink_finish(struct text_sink *s, size_t *out_len) {
    if (s->failed) {
        text_sink_free(s);
        return NULL;
    }
    char *out = s->buf;
    size_t len = s->len;
    s->buf = NULL;
    s->len = s->cap = 0;
    if (!out) {
        out = calloc(1, 1);
        if (!out)
            return NULL;
    }
    if (out_len)
        *out_len = len;
    free(s->scratch);
    s->scratch = NULL;
    s->scratch_cap = 0;
    return out;
}
