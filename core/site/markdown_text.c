/* Firecrawl's markdown is text already; what an LLM does not need is where
 * the links and images point.  Images go, links keep their text, bare and
 * angle-bracket URLs go, link reference definitions and table rules go, and
 * a line that was a lone link to "About us" or "Pricing" goes as a menu
 * entry.  Everything then passes the shared line filter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "site/site.h"
#include "site/site_internal.h"

/* Lines longer than this are read in pieces: the match arrays below cost 8
 * bytes per byte of a line, and a link split between pieces only loses its
 * target's removal. */
#define MD_MAX_LINE (1024 * 1024)
#define MD_MAX_NESTING 4
#define NO_MATCH UINT32_MAX

struct out {
    char *p;
    size_t len;
};

static void put(struct out *o, const char *s, size_t n) {
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static bool is_space(char ch) {
    return ch == ' ' || ch == '\t';
}

/* One line and, for each '[' and '(' in it, the index of its closing ']' or
 * ')' (NO_MATCH when none).  Computed in one pass with a stack, so a line of
 * unmatched brackets costs linear time, not quadratic. */
struct line {
    const char *s;
    size_t len;
    uint32_t *match;
    uint32_t *stack;
};

static void match_pairs(struct line *l, char open, char close) {
    size_t depth = 0;
    for (size_t i = 0; i < l->len; i++) {
        char c = l->s[i];
        if (c == '\\') {
            i++;
        } else if (c == open) {
            l->match[i] = NO_MATCH;
            l->stack[depth++] = (uint32_t)i;
        } else if (c == close && depth) {
            l->match[l->stack[--depth]] = (uint32_t)i;
        }
    }
}

static size_t closing(const struct line *l, size_t open, size_t end) {
    uint32_t m = l->match[open];
    return m != NO_MATCH && m < end ? m : 0;
}

static bool starts_url(const char *s, size_t len) {
    return (len >= 7 && strncmp(s, "http://", 7) == 0) || (len >= 8 && strncmp(s, "https://", 8) == 0);
}

/* What a line held besides its text. */
struct line_shape {
    unsigned links;  /* links kept as their text */
    bool other_text; /* characters outside any link */
};

/* Rewrites l->s[from..end) into o (never longer than the input). */
static void rewrite(const struct line *l, size_t from, size_t end, struct out *o, int depth,
                    struct line_shape *shape) {
    const char *s = l->s;
    size_t i = from;
    while (i < end) {
        char ch = s[i];
        if (ch == '\\' && i + 1 < end && strchr("\\`*_{}[]()#+-.!<>|", s[i + 1])) {
            put(o, s + i + 1, 1);
            shape->other_text = true;
            i += 2;
            continue;
        }
        bool image = ch == '!' && i + 1 < end && s[i + 1] == '[';
        if ((ch == '[' || image) && depth < MD_MAX_NESTING) {
            size_t open = image ? i + 1 : i;
            size_t close = closing(l, open, end);
            if (close) {
                size_t after = close + 1, past = 0; /* one past the link's target or reference */
                if (after < end && (s[after] == '(' || s[after] == '[')) {
                    size_t target_end = closing(l, after, end);
                    past = target_end ? target_end + 1 : 0;
                }
                if (past) {
                    if (!image) {
                        struct line_shape inner = {0};
                        rewrite(l, open + 1, close, o, depth + 1, &inner);
                        shape->links += 1 + inner.links;
                    }
                    i = past;
                    continue;
                }
            }
        }
        if (ch == '<' && starts_url(s + i + 1, end - i - 1)) {
            const char *gt = memchr(s + i, '>', end - i);
            if (gt) {
                i = (size_t)(gt - s) + 1;
                continue;
            }
        }
        if (starts_url(s + i, end - i) && (i == from || is_space(s[i - 1]) || s[i - 1] == '(')) {
            while (i < end && !is_space(s[i]))
                i++;
            continue;
        }
        if (!is_space(ch))
            shape->other_text = true;
        put(o, s + i, 1);
        i++;
    }
}

/* "[id]: http://..." */
static bool is_reference_definition(const char *s, size_t len) {
    size_t i = 0;
    while (i < len && i < 3 && s[i] == ' ')
        i++;
    if (i >= len || s[i] != '[')
        return false;
    const char *close = memchr(s + i, ']', len - i);
    return close && (size_t)(close - s) + 1 < len && close[1] == ':';
}

/* "|---|:---:|" */
static bool is_table_rule(const char *s, size_t len) {
    bool dash = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '-')
            dash = true;
        else if (!strchr("|: \t", s[i]))
            return false;
    }
    return dash;
}

/* The list marker or quote prefix of a line: "- ", "* ", "1. ", "> ". */
static size_t marker_length(const char *s, size_t len) {
    size_t i = 0;
    while (i < len && is_space(s[i]))
        i++;
    if (i < len && strchr("-*+>", s[i]) && i + 1 < len && is_space(s[i + 1]))
        return i + 2;
    size_t d = i;
    while (d < len && s[d] >= '0' && s[d] <= '9')
        d++;
    if (d > i && d + 1 < len && (s[d] == '.' || s[d] == ')') && is_space(s[d + 1]))
        return d + 2;
    return i;
}

char *site_markdown_to_text(const char *md, size_t len, size_t max_chars, size_t *out_len) {
    size_t clean_len;
    char *clean = text_utf8_sanitize(md ? md : "", md ? len : 0, &clean_len);
    size_t widest = clean_len < MD_MAX_LINE ? clean_len : MD_MAX_LINE;
    struct out o = {.p = malloc(widest + 1), .len = 0};
    struct line l = {.match = malloc((widest + 1) * sizeof(uint32_t)),
                     .stack = malloc((widest + 1) * sizeof(uint32_t))};
    char *text = NULL;
    if (!clean || !o.p || !l.match || !l.stack)
        goto out;
    struct text_sink sink;
    text_sink_init(&sink, max_chars);
    size_t start = 0;
    while (start < clean_len) {
        const char *nl = memchr(clean + start, '\n', clean_len - start);
        size_t end = nl ? (size_t)(nl - clean) : clean_len, next = end + 1;
        if (end - start > MD_MAX_LINE) {
            /* a piece, ending on a character boundary */
            end = start + MD_MAX_LINE;
            while (end > start && ((unsigned char)clean[end] & 0xc0) == 0x80)
                end--;
            next = end;
        }
        l.s = clean + start;
        l.len = end - start;
        if (l.len && l.s[l.len - 1] == '\r')
            l.len--;
        if (!is_reference_definition(l.s, l.len) && !is_table_rule(l.s, l.len)) {
            size_t marker = marker_length(l.s, l.len);
            struct line_shape shape = {0};
            o.len = 0;
            put(&o, l.s, marker);
            match_pairs(&l, '[', ']');
            match_pairs(&l, '(', ')');
            rewrite(&l, marker, l.len, &o, 0, &shape);
            bool lone_link = shape.links == 1 && !shape.other_text;
            bool menu = lone_link && text_is_menu_entry(o.p + marker, o.len - marker);
            if (!menu && !text_sink_line(&sink, o.p, o.len))
                break;
        }
        start = next;
    }
    text = text_sink_finish(&sink, out_len);
out:
    free(clean);
    free(o.p);
    free(l.match);
    free(l.stack);
    return text;
}

char *site_plain_to_text(const char *text, size_t len, size_t max_chars, size_t *out_len) {
    size_t clean_len;
    char *clean = text_utf8_sanitize(text ? text : "", text ? len : 0, &clean_len);
    if (!clean)
        return NULL;
    struct text_sink sink;
    text_sink_init(&sink, max_chars);
    size_t start = 0;
    while (start <= clean_len) {
        const char *nl = memchr(clean + start, '\n', clean_len - start);
        size_t end = nl ? (size_t)(nl - clean) : clean_len;
        if (!text_sink_line(&sink, clean + start, end - start) || !nl)
            break;
        start = end + 1;
    }
    free(clean);
    return text_sink_finish(&sink, out_len);
}
