/* HTML to the text an LLM should read, through gumbo (a full HTML5 parser:
 * entities decoded, malformed markup repaired the way browsers do).  The
 * tree is walked without recursion, so nesting depth costs heap, not stack.
 * What is dropped: code and embedded documents (script, style, svg, iframe,
 * ...), the page's chrome (nav, banner header and footer, aside, forms and
 * their controls), anything hidden, and cookie/consent banners.  What is
 * kept: the title, then the text, one line per block, headings on lines of
 * their own, list items as "- item", table cells joined with " | ". */
#include <gumbo.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "site/site.h"
#include "site/site_internal.h"

/* gumbo 0.10 leaks a few strings on some malformed pages (found by
 * fuzz_html): every block it takes is linked into this list, and whatever
 * gumbo_destroy_output leaves is freed after it. */
union heap_block {
    struct {
        union heap_block *prev, *next;
    } link;
    max_align_t align; /* what follows is aligned as malloc's result is */
};

static void heap_init(union heap_block *head) {
    head->link.prev = head->link.next = head;
}

static void *heap_alloc(void *userdata, size_t size) {
    union heap_block *head = userdata;
    if (size > SIZE_MAX - sizeof *head)
        return NULL;
    union heap_block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->link.prev = head;
    b->link.next = head->link.next;
    head->link.next->link.prev = b;
    head->link.next = b;
    return b + 1;
}

static void heap_free(void *userdata, void *p) {
    (void)userdata;
    if (!p)
        return;
    union heap_block *b = (union heap_block *)p - 1;
    b->link.prev->link.next = b->link.next;
    b->link.next->link.prev = b->link.prev;
    free(b);
}

static void heap_release(union heap_block *head) {
    while (head->link.next != head)
        heap_free(head, head->link.next + 1);
}

/* The line being built, handed to the sink at each block boundary. */
struct builder {
    struct text_sink *sink;
    char *line;
    size_t len, cap;
    bool stop; /* the sink is full (or out of memory) */
    int pre;   /* inside <pre>: newlines in text break lines */
};

static void flush_line(struct builder *b) {
    if (b->stop)
        return;
    if (b->len && !text_sink_line(b->sink, b->line, b->len))
        b->stop = true;
    b->len = 0;
}

static void append(struct builder *b, const char *s, size_t n) {
    if (b->stop)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->line, cap);
        if (!p) {
            b->stop = true;
            b->sink->failed = true;
            return;
        }
        b->line = p;
        b->cap = cap;
    }
    memcpy(b->line + b->len, s, n);
    b->len += n;
}

/* Source newlines are spaces in HTML, except inside <pre>. */
static void append_text(struct builder *b, const char *text) {
    const char *p = text;
    while (*p && !b->stop) {
        size_t run = strcspn(p, "\n");
        append(b, p, run);
        p += run;
        if (*p == '\n') {
            if (b->pre)
                flush_line(b);
            else
                append(b, " ", 1);
            p++;
        }
    }
}

static const char *attr(const GumboElement *el, const char *name) {
    const GumboAttribute *a = gumbo_get_attribute(&el->attributes, name);
    return a ? a->value : NULL;
}

static bool contains_ci(const char *haystack, const char *needle) {
    return haystack && strcasestr(haystack, needle) != NULL;
}

/* style="display: none" or "visibility:hidden", spaces and case aside. */
static bool style_hides(const char *style) {
    if (!style)
        return false;
    char squeezed[256];
    size_t n = 0;
    for (const char *p = style; *p && n + 1 < sizeof(squeezed); p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            squeezed[n++] = *p;
    squeezed[n] = '\0';
    return strcasestr(squeezed, "display:none") || strcasestr(squeezed, "visibility:hidden");
}

static bool is_cookie_banner(const GumboElement *el) {
    static const char *const marks[] = {"cookie", "consent", "gdpr"};
    const char *cls = attr(el, "class"), *id = attr(el, "id");
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        if (contains_ci(cls, marks[i]) || contains_ci(id, marks[i]))
            return true;
    return false;
}

/* Elements whose whole subtree is dropped for what they are. */
static bool tag_dropped(GumboTag tag) {
    switch (tag) {
    case GUMBO_TAG_HEAD: case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_NOSCRIPT:
    case GUMBO_TAG_TEMPLATE: case GUMBO_TAG_SVG: case GUMBO_TAG_MATH: case GUMBO_TAG_IFRAME:
    case GUMBO_TAG_OBJECT: case GUMBO_TAG_EMBED: case GUMBO_TAG_CANVAS: case GUMBO_TAG_VIDEO:
    case GUMBO_TAG_AUDIO: case GUMBO_TAG_MAP: case GUMBO_TAG_NAV: case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_FORM: case GUMBO_TAG_BUTTON: case GUMBO_TAG_SELECT: case GUMBO_TAG_TEXTAREA:
    case GUMBO_TAG_INPUT: case GUMBO_TAG_LABEL: case GUMBO_TAG_OPTION: case GUMBO_TAG_DATALIST:
    case GUMBO_TAG_FRAMESET: case GUMBO_TAG_NOFRAMES: case GUMBO_TAG_NOEMBED: case GUMBO_TAG_APPLET:
    case GUMBO_TAG_TITLE: case GUMBO_TAG_MENU:
        return true;
    default:
        return false;
    }
}

/* Page roots never count as banners: a body classed "cookies-accepted" is
 * still the page. */
static bool is_page_root(GumboTag tag) {
    return tag == GUMBO_TAG_HTML || tag == GUMBO_TAG_BODY || tag == GUMBO_TAG_MAIN || tag == GUMBO_TAG_ARTICLE;
}

/* The ancestors that make a header or footer belong to the content (the
 * article's own byline) rather than to the page's chrome. */
struct context {
    int sectioning; /* open article/main/section elements */
};

static bool element_dropped(const GumboNode *node, const struct context *ctx) {
    const GumboElement *el = &node->v.element;
    if (node->type == GUMBO_NODE_TEMPLATE || tag_dropped(el->tag))
        return true;
    if (el->tag_namespace != GUMBO_NAMESPACE_HTML)
        return true; /* svg or math content reached some other way */
    if ((el->tag == GUMBO_TAG_HEADER || el->tag == GUMBO_TAG_FOOTER) && ctx->sectioning == 0)
        return true; /* role banner / contentinfo */
    const char *role = attr(el, "role");
    if (role && (strcasecmp(role, "navigation") == 0 || strcasecmp(role, "banner") == 0 ||
                 strcasecmp(role, "contentinfo") == 0 || strcasecmp(role, "complementary") == 0 ||
                 strcasecmp(role, "dialog") == 0 || strcasecmp(role, "alertdialog") == 0))
        return true;
    if (attr(el, "hidden"))
        return true;
    const char *aria_hidden = attr(el, "aria-hidden");
    if (aria_hidden && strcasecmp(aria_hidden, "true") == 0)
        return true;
    if (style_hides(attr(el, "style")))
        return true;
    return !is_page_root(el->tag) && is_cookie_banner(el);
}

static bool is_block(GumboTag tag) {
    switch (tag) {
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_BODY:
    case GUMBO_TAG_CAPTION: case GUMBO_TAG_CENTER: case GUMBO_TAG_DD: case GUMBO_TAG_DETAILS:
    case GUMBO_TAG_DIR: case GUMBO_TAG_DIV: case GUMBO_TAG_DL: case GUMBO_TAG_DT:
    case GUMBO_TAG_FIELDSET: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FIGURE: case GUMBO_TAG_FOOTER:
    case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5:
    case GUMBO_TAG_H6: case GUMBO_TAG_HEADER: case GUMBO_TAG_HGROUP: case GUMBO_TAG_HR:
    case GUMBO_TAG_HTML: case GUMBO_TAG_LEGEND: case GUMBO_TAG_LI: case GUMBO_TAG_LISTING:
    case GUMBO_TAG_MAIN: case GUMBO_TAG_OL: case GUMBO_TAG_P: case GUMBO_TAG_PLAINTEXT:
    case GUMBO_TAG_PRE: case GUMBO_TAG_SECTION: case GUMBO_TAG_SUMMARY: case GUMBO_TAG_TABLE:
    case GUMBO_TAG_TBODY: case GUMBO_TAG_TFOOT: case GUMBO_TAG_THEAD: case GUMBO_TAG_TR:
    case GUMBO_TAG_UL: case GUMBO_TAG_XMP:
        return true;
    default:
        return false;
    }
}

static bool is_sectioning(GumboTag tag) {
    return tag == GUMBO_TAG_ARTICLE || tag == GUMBO_TAG_MAIN || tag == GUMBO_TAG_SECTION;
}

static void enter_element(struct builder *b, const GumboElement *el, struct context *ctx) {
    if (is_block(el->tag) || el->tag == GUMBO_TAG_BR)
        flush_line(b);
    if (el->tag == GUMBO_TAG_LI)
        append(b, "- ", 2);
    else if ((el->tag == GUMBO_TAG_TD || el->tag == GUMBO_TAG_TH) && b->len)
        append(b, " | ", 3);
    if (el->tag == GUMBO_TAG_PRE || el->tag == GUMBO_TAG_LISTING || el->tag == GUMBO_TAG_PLAINTEXT)
        b->pre++;
    if (is_sectioning(el->tag))
        ctx->sectioning++;
}

static void leave_element(struct builder *b, const GumboElement *el, struct context *ctx) {
    if (el->tag == GUMBO_TAG_PRE || el->tag == GUMBO_TAG_LISTING || el->tag == GUMBO_TAG_PLAINTEXT)
        b->pre--;
    if (is_sectioning(el->tag))
        ctx->sectioning--;
    if (is_block(el->tag))
        flush_line(b);
}

struct frame {
    const GumboNode *node;
    unsigned next_child;
};

/* Depth-first over root's subtree with an explicit stack. */
static void walk(struct builder *b, const GumboNode *root) {
    size_t cap = 64, depth = 0;
    struct frame *stack = malloc(cap * sizeof(*stack));
    if (!stack) {
        b->stop = true;
        b->sink->failed = true;
        return;
    }
    struct context ctx = {0};
    stack[depth++] = (struct frame){root, 0};
    enter_element(b, &root->v.element, &ctx);
    while (depth && !b->stop) {
        struct frame *top = &stack[depth - 1];
        const GumboVector *children = &top->node->v.element.children;
        if (top->next_child >= children->length) {
            leave_element(b, &top->node->v.element, &ctx);
            depth--;
            continue;
        }
        const GumboNode *child = children->data[top->next_child++];
        switch (child->type) {
        case GUMBO_NODE_TEXT:
        case GUMBO_NODE_CDATA:
        case GUMBO_NODE_WHITESPACE:
            append_text(b, child->v.text.text);
            break;
        case GUMBO_NODE_ELEMENT:
        case GUMBO_NODE_TEMPLATE:
            if (element_dropped(child, &ctx)) {
                /* A dropped block still separates what stands around it. */
                if (is_block(child->v.element.tag) || child->v.element.tag == GUMBO_TAG_NAV ||
                    child->v.element.tag == GUMBO_TAG_ASIDE || child->v.element.tag == GUMBO_TAG_FORM)
                    flush_line(b);
                break;
            }
            if (depth == cap) {
                struct frame *grown = realloc(stack, 2 * cap * sizeof(*stack));
                if (!grown) {
                    b->stop = true;
                    b->sink->failed = true;
                    break;
                }
                stack = grown;
                cap *= 2;
            }
            stack[depth++] = (struct frame){child, 0};
            enter_element(b, &child->v.element, &ctx);
            break;
        default:
            break; /* comments, the doctype */
        }
    }
    free(stack);
}

static const GumboNode *find_child(const GumboNode *parent, GumboTag tag) {
    if (!parent || parent->type != GUMBO_NODE_ELEMENT)
        return NULL;
    const GumboVector *children = &parent->v.element.children;
    for (unsigned i = 0; i < children->length; i++) {
        const GumboNode *c = children->data[i];
        if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == tag)
            return c;
    }
    return NULL;
}

/* The document's <title>, as the first line. */
static void emit_title(struct builder *b, const GumboNode *html) {
    const GumboNode *title = find_child(find_child(html, GUMBO_TAG_HEAD), GUMBO_TAG_TITLE);
    if (!title)
        return;
    const GumboVector *children = &title->v.element.children;
    for (unsigned i = 0; i < children->length; i++) {
        const GumboNode *c = children->data[i];
        if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE)
            append(b, c->v.text.text, strlen(c->v.text.text));
    }
    /* Newlines inside a title are spaces; the sink collapses them. */
    for (size_t i = 0; i < b->len; i++)
        if (b->line[i] == '\n' || b->line[i] == '\r')
            b->line[i] = ' ';
    flush_line(b);
}

char *site_html_to_text(const char *html, size_t len, size_t max_chars, size_t *out_len) {
    size_t clean_len;
    char *clean = text_utf8_sanitize(html ? html : "", html ? len : 0, &clean_len);
    if (!clean)
        return NULL;
    clean_len = html_depth_limited_length(clean, clean_len);
    GumboOptions options = kGumboDefaultOptions;
    options.max_errors = 0; /* parse errors are of no use here and cost memory */
    union heap_block heap;
    heap_init(&heap);
    options.allocator = heap_alloc;
    options.deallocator = heap_free;
    options.userdata = &heap;
    GumboOutput *doc = gumbo_parse_with_options(&options, clean, clean_len);
    if (!doc) {
        heap_release(&heap);
        free(clean);
        return NULL;
    }
    struct text_sink sink;
    text_sink_init(&sink, max_chars);
    struct builder b = {.sink = &sink};
    if (doc->root && doc->root->type == GUMBO_NODE_ELEMENT) {
        emit_title(&b, doc->root);
        walk(&b, doc->root);
        flush_line(&b);
    }
    free(b.line);
    gumbo_destroy_output(&options, doc);
    heap_release(&heap);
    free(clean);
    return text_sink_finish(&sink, out_len);
}
