/* A bound on element nesting, applied before gumbo sees a page.
 *
 * gumbo has no depth limit: a hostile page of a million nested <div>s (5 MB)
 * makes its tree construction quadratic (minutes of CPU: every start tag
 * searches the whole stack of open elements) and its recursive tree
 * destruction overflows the stack.  Browsers cap the depth too (Blink at
 * 512).  Here a light pass over the tags, following the HTML tokenizer's
 * rules for comments, raw-text elements and quoted attribute values, keeps
 * an approximate stack of open elements and cuts the input at the first tag
 * that would open more than HTML_MAX_DEPTH of them, or at the start tag
 * after the HTML_MAX_TAGS-th (gumbo needs a few hundred bytes per element:
 * a page of a million tiny elements would cost half a gigabyte, and far
 * fewer hold more text than MAX_CONTENT_LENGTH allows).  Elements that close
 * their siblings implicitly (p, li, td, tr, option...) or never have
 * content (void elements) are modelled so sloppy but ordinary pages are not
 * mistaken for deep ones. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "site/site_internal.h"

#define TAG_NAME_MAX 16 /* longer names are compared by their first 16 bytes */

struct open_element {
    char name[TAG_NAME_MAX];
    unsigned char name_len;
};

struct depth_scan {
    const char *s;
    size_t len, i;
    struct open_element stack[HTML_MAX_DEPTH];
    size_t depth;
    size_t foreign; /* open svg and math elements */
    size_t tags;    /* start tags seen */
};

static bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static bool name_is(const char *name, size_t len, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == len && strncasecmp(name, *list, len) == 0)
            return true;
    return false;
}

static const char *const void_elements[] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                                            "meta", "param", "source", "track", "wbr", "keygen", "frame",
                                            "basefont", "bgsound", "image", "isindex", NULL};
/* Closed by their next sibling or their parent's end; they do not stack up. */
static const char *const sibling_closed[] = {"p", "li", "dt", "dd", "option", "optgroup", "rb", "rt", "rtc", "rp",
                                             "html", "head", "body", "a", "nobr", "button", "colgroup", "caption",
                                             NULL};
/* Whose content is text up to their own end tag. */
static const char *const raw_text[] = {"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                                       "noframes", "noscript", NULL};
/* Where "<x/>" closes itself (in HTML it opens x like "<x>"). */
static const char *const foreign_roots[] = {"svg", "math", NULL};

/* A table's structure: td/th 1, tr 2, tbody/thead/tfoot 3; each closes the
 * open ones of its own rank and below. */
static int table_rank(const char *name, size_t len) {
    static const char *const td[] = {"td", "th", NULL}, *const tr[] = {"tr", NULL},
                             *const section[] = {"tbody", "thead", "tfoot", NULL};
    if (name_is(name, len, td))
        return 1;
    if (name_is(name, len, tr))
        return 2;
    if (name_is(name, len, section))
        return 3;
    return 0;
}

static int rank_of(const struct open_element *e) {
    return table_rank(e->name, e->name_len);
}

static bool same_name(const struct open_element *e, const char *name, size_t len) {
    size_t n = len < TAG_NAME_MAX ? len : TAG_NAME_MAX;
    return e->name_len == n && strncasecmp(e->name, name, n) == 0;
}

/* Skips to just past the first case-insensitive occurrence of text, or to
 * the end. */
static void skip_past(struct depth_scan *d, const char *text) {
    size_t n = strlen(text);
    while (d->i + n <= d->len) {
        if (strncasecmp(d->s + d->i, text, n) == 0) {
            d->i += n;
            return;
        }
        d->i++;
    }
    d->i = d->len;
}

/* From just after the tag name to just past its '>': attribute values in
 * quotes may hold '>', but quotes only open a value right after '='. */
static bool skip_attributes(struct depth_scan *d, bool *self_closing) {
    enum { BETWEEN, NAME, AFTER_EQUALS, UNQUOTED } state = BETWEEN;
    *self_closing = false;
    while (d->i < d->len) {
        char c = d->s[d->i++];
        switch (state) {
        case BETWEEN:
        case NAME:
            if (c == '>')
                return true;
            if (c == '=' && state == NAME) {
                state = AFTER_EQUALS;
            } else if (c == '/') {
                *self_closing = d->i < d->len && d->s[d->i] == '>';
            } else if (!is_ws(c)) {
                state = NAME;
            } else {
                /* "a = b": whitespace before '=' keeps the name pending */
                size_t j = d->i;
                while (j < d->len && is_ws(d->s[j]))
                    j++;
                if (!(state == NAME && j < d->len && d->s[j] == '='))
                    state = BETWEEN;
            }
            break;
        case AFTER_EQUALS:
            if (is_ws(c))
                break;
            if (c == '"' || c == '\'') {
                const char *close = memchr(d->s + d->i, c, d->len - d->i);
                d->i = close ? (size_t)(close - d->s) + 1 : d->len;
                state = BETWEEN;
            } else if (c == '>') {
                return true;
            } else {
                state = UNQUOTED;
            }
            break;
        case UNQUOTED:
            if (c == '>')
                return true;
            if (is_ws(c))
                state = BETWEEN;
            break;
        }
    }
    return false;
}

static void pop(struct depth_scan *d) {
    const struct open_element *e = &d->stack[--d->depth];
    if (name_is(e->name, e->name_len, foreign_roots))
        d->foreign--;
}

/* An end tag: closes the innermost open element of that name, if any. */
static void close_element(struct depth_scan *d, const char *name, size_t len) {
    for (size_t k = d->depth; k > 0; k--) {
        if (same_name(&d->stack[k - 1], name, len)) {
            while (d->depth >= k)
                pop(d);
            return;
        }
        if (d->depth - k > 64)
            return; /* a stray end tag: the parser ignores it, and so do we */
    }
}

/* A start tag; false when it would open one element too many. */
static bool open_element(struct depth_scan *d, const char *name, size_t len) {
    int rank = table_rank(name, len);
    if (rank) {
        /* <tr> closes an open td and tr of the same table, and so on. */
        while (d->depth && rank_of(&d->stack[d->depth - 1]) && rank_of(&d->stack[d->depth - 1]) <= rank)
            pop(d);
    }
    if (d->depth == HTML_MAX_DEPTH)
        return false;
    struct open_element *e = &d->stack[d->depth++];
    e->name_len = (unsigned char)(len < TAG_NAME_MAX ? len : TAG_NAME_MAX);
    memcpy(e->name, name, e->name_len);
    if (name_is(name, len, foreign_roots))
        d->foreign++;
    return true;
}

size_t html_depth_limited_length(const char *html, size_t len) {
    struct depth_scan d = {.s = html, .len = len};
    while (d.i < d.len) {
        const char *lt = memchr(d.s + d.i, '<', d.len - d.i);
        if (!lt)
            break;
        size_t tag_start = (size_t)(lt - d.s);
        d.i = tag_start + 1;
        if (d.i >= d.len)
            break;
        char c = d.s[d.i];
        if (c == '!') {
            if (d.i + 2 < d.len && d.s[d.i + 1] == '-' && d.s[d.i + 2] == '-') {
                d.i += 3;
                skip_past(&d, "-->");
            } else if (d.i + 7 < d.len && strncmp(d.s + d.i, "![CDATA[", 8) == 0) {
                skip_past(&d, "]]>");
            } else {
                skip_past(&d, ">");
            }
            continue;
        }
        if (c == '?') {
            skip_past(&d, ">");
            continue;
        }
        bool end_tag = c == '/';
        if (end_tag)
            d.i++;
        if (d.i >= d.len || !is_alpha(d.s[d.i]))
            continue; /* text, or a bogus comment the next '>' ends */
        size_t name_start = d.i;
        while (d.i < d.len && !is_ws(d.s[d.i]) && d.s[d.i] != '/' && d.s[d.i] != '>')
            d.i++;
        const char *name = d.s + name_start;
        size_t name_len = d.i - name_start;
        bool self_closing;
        if (!skip_attributes(&d, &self_closing))
            break;
        if (end_tag) {
            close_element(&d, name, name_len);
            continue;
        }
        if (++d.tags > HTML_MAX_TAGS)
            return tag_start;
        static const char *const plaintext[] = {"plaintext", NULL};
        if (name_is(name, name_len, plaintext))
            break; /* the rest of the document is text */
        if (name_is(name, name_len, raw_text)) {
            char end[TAG_NAME_MAX + 3] = "</";
            memcpy(end + 2, name, name_len);
            end[2 + name_len] = '\0';
            skip_past(&d, end);
            continue;
        }
        if (name_is(name, name_len, void_elements) || name_is(name, name_len, sibling_closed))
            continue;
        if (self_closing && d.foreign)
            continue; /* "<path/>" in svg; "<div/>" in HTML opens a div all the same */
        if (!open_element(&d, name, name_len))
            return tag_start;
    }
    return len;
}
