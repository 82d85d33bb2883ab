/* Internal to core/site: what site.c puts together. */
#ifndef GTM_SITE_INTERNAL_H
#define GTM_SITE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* ---- ssrf.c ---------------------------------------------------------------- */

/* Checks a GTM_FETCH_ALLOW list ("host:port,host:port"; host an IPv4
 * literal, a bracketed IPv6 literal or localhost).  0, or -1 with a reason. */
int site_fetch_allow_check(const char *list, char *err, size_t errlen);

/* ---- text_clean.c: the line filter both text paths end in ------------------ */

/* Collects cleaned lines: whitespace collapsed, boilerplate lines and blank
 * lines dropped, at most max_chars code points in all. */
struct text_sink {
    char *buf;
    size_t len, cap;
    size_t max_chars, chars;
    bool full;     /* max_chars reached: later lines are ignored */
    bool failed;   /* out of memory */
    char *scratch; /* the line being cleaned */
    size_t scratch_cap;
};

void text_sink_init(struct text_sink *s, size_t max_chars);
/* Adds one raw line.  False once the sink takes no more (full or failed). */
bool text_sink_line(struct text_sink *s, const char *line, size_t len);
/* The text (malloc'd, NUL-terminated; NULL when out of memory); the sink is
 * left empty. */
char *text_sink_finish(struct text_sink *s, size_t *out_len);
void text_sink_free(struct text_sink *s);

/* True when the cleaned line (whitespace already collapsed) is navigation,
 * cookie or legal boilerplate as a whole. */
bool text_is_boilerplate_line(const char *line, size_t len);

/* True when the line is nothing but menu or boilerplate phrases ("About us",
 * "Pricing"): boilerplate when it was a link of its own. */
bool text_is_menu_entry(const char *line, size_t len);

/* Valid UTF-8 copy of in[0..len): each invalid sequence (and NUL) becomes
 * U+FFFD.  malloc'd, NUL-terminated; NULL when out of memory. */
char *text_utf8_sanitize(const char *in, size_t len, size_t *out_len);

/* ---- html_depth.c ------------------------------------------------------------ */

/* Deeper than this, or past this many start tags, the rest of a page is cut
 * (see html_depth.c). */
#define HTML_MAX_DEPTH 256
#define HTML_MAX_TAGS 150000

/* The length of the prefix of html within both limits (len when all of it
 * is). */
size_t html_depth_limited_length(const char *html, size_t len);

/* ---- markdown_text.c ------------------------------------------------------- */

/* Firecrawl's markdown to clean text: images dropped, links reduced to their
 * text, bare URLs dropped, then the line filter.  malloc'd; NULL when out of
 * memory. */
char *site_markdown_to_text(const char *md, size_t len, size_t max_chars, size_t *out_len);

/* Plain text through the line filter only. */
char *site_plain_to_text(const char *text, size_t len, size_t max_chars, size_t *out_len);

#endif
