/* The template language of prompt.h: a tokenizer that applies the standalone
 * line rule, a parser that turns the tokens into a tree, and a renderer that
 * walks the tree with a stack of contexts. */
#include "util/err.h"
#include "prompt/prompt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prompts nest two or three levels; the bound keeps parsing and rendering
 * recursion (and the context stack) small whatever the template says. */
#define MAX_NESTING 64
/* Sections over lists nest, so output and work can grow as the product of
 * the lists' lengths: a rendering stops at these, far above any real prompt
 * (a model's whole context is a few MB). */
#define MAX_RENDER_BYTES ((size_t)16 << 20)
#define MAX_RENDER_STEPS ((unsigned long)1 << 20)

enum node_kind { NODE_TEXT, NODE_VALUE, NODE_JSON, NODE_SECTION, NODE_INVERTED };

/* A dotted name split into its parts; count 0 is "." (the current item). */
struct path {
    char *storage; /* the name with its dots turned into NULs */
    const char **segments;
    size_t count;
};

struct node {
    enum node_kind kind;
    const char *text; /* NODE_TEXT: points into tmpl->source */
    size_t text_len;
    struct path path;
    struct node *children; /* sections only */
    size_t child_count;
};

struct tmpl {
    char *source;
    struct node *nodes;
    size_t node_count;
};

/* ---- tokens ---- */

enum token_kind { TOK_TEXT, TOK_VALUE, TOK_JSON, TOK_OPEN, TOK_INVERTED, TOK_CLOSE, TOK_COMMENT };

struct token {
    enum token_kind kind;
    const char *start; /* the text, or the tag's name */
    size_t len;
    size_t line;
};

struct token_list {
    struct token *items;
    size_t count, cap;
};

static int push_token(struct token_list *list, enum token_kind kind, const char *start, size_t len, size_t line)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 32;
        struct token *items = realloc(list->items, cap * sizeof *items);
        if (!items) {
            return -1;
        }
        list->items = items;
        list->cap = cap;
    }
    list->items[list->count++] = (struct token){kind, start, len, line};
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_space(char c)
{
    return is_blank(c) || c == '\n' || c == '\r';
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* "." or dot-separated parts made of letters, digits, '_' and '-'. */
static int valid_name(const char *s, size_t len)
{
    if (len == 1 && s[0] == '.') {
        return 1;
    }
    size_t part = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (part == 0) {
                return 0;
            }
            part = 0;
        } else if (is_name_char(s[i])) {
            part++;
        } else {
            return 0;
        }
    }
    return part > 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_space(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*s)[*len - 1])) {
        (*len)--;
    }
}

/* Classifies the inside of {{...}}; the name is what follows the sigil. */
static int classify_tag(const char *inner, size_t inner_len, enum token_kind *kind, const char **name, size_t *name_len)
{
    const char *s = inner;
    size_t len = inner_len;
    trim(&s, &len);
    if (len > 0 && s[0] == '!') {
        *kind = TOK_COMMENT;
        *name = s;
        *name_len = 0;
        return 0;
    }
    if (len > 0 && (s[0] == '#' || s[0] == '^' || s[0] == '/')) {
        *kind = s[0] == '#' ? TOK_OPEN : s[0] == '^' ? TOK_INVERTED : TOK_CLOSE;
        s++;
        len--;
        trim(&s, &len);
    } else if (len > 4 && memcmp(s, "json", 4) == 0 && is_space(s[4])) {
        *kind = TOK_JSON;
        s += 4;
        len -= 4;
        trim(&s, &len);
    } else {
        *kind = TOK_VALUE;
    }
    *name = s;
    *name_len = len;
    return valid_name(s, len) ? 0 : -1;
}

/* Lines are counted inside tags too: a comment may span several. */
static size_t count_newlines(const char *s, size_t len, const char **last_line_start)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n') {
            n++;
            *last_line_start = s + i + 1;
        }
    }
    return n;
}

static int tokenize(const char *src, size_t len, struct token_list *out, char *err, size_t errlen)
{
    const char *end = src + len;
    const char *pos = src;        /* scanning resumes here */
    const char *text_start = src; /* start of the pending text token */
    const char *line_start = src;
    size_t line = 1;

    for (;;) {
        const char *open = memmem(pos, (size_t)(end - pos), "{{", 2);
        if (!open) {
            if (end > text_start && push_token(out, TOK_TEXT, text_start, (size_t)(end - text_start), line) < 0) {
                goto oom;
            }
            return 0;
        }
        line += count_newlines(pos, (size_t)(open - pos), &line_start);
        const char *tag_line_start = line_start;
        size_t tag_line = line;

        const char *close = memmem(open + 2, (size_t)(end - open - 2), "}}", 2);
        if (!close) {
            err_set(err, errlen, "line %zu: unterminated tag (no closing }})", tag_line);
            return -1;
        }
        const char *inner = open + 2;
        size_t inner_len = (size_t)(close - inner);
        enum token_kind kind;
        const char *name;
        size_t name_len;
        if (classify_tag(inner, inner_len, &kind, &name, &name_len) < 0) {
            /* The reason stays on one line and short. */
            size_t shown = strcspn(inner, "\r\n");
            shown = shown < inner_len ? shown : inner_len;
            int cut = shown > 40 || shown < inner_len;
            err_set(err, errlen, "line %zu: unknown tag '{{%.*s%s}}'", tag_line, (int)(shown > 40 ? 40 : shown), inner,
                    cut ? "..." : "");
            return -1;
        }
        line += count_newlines(inner, inner_len, &line_start);

        const char *text_end = open;
        const char *after = close + 2;
        if (kind != TOK_VALUE && kind != TOK_JSON) {
            /* Standalone: only blanks before the tag on its line and after it
             * up to the line end; the whole line then disappears. */
            int standalone = 1;
            for (const char *c = tag_line_start; c < open; c++) {
                if (!is_blank(*c)) {
                    standalone = 0;
                    break;
                }
            }
            const char *rest = after;
            while (standalone && rest < end && is_blank(*rest)) {
                rest++;
            }
            if (standalone) {
                if (rest == end) {
                    after = rest;
                } else if (*rest == '\n') {
                    after = rest + 1;
                } else if (*rest == '\r' && rest + 1 < end && rest[1] == '\n') {
                    after = rest + 2;
                } else {
                    standalone = 0;
                }
            }
            if (standalone) {
                text_end = tag_line_start;
                if (after > src && after[-1] == '\n') {
                    line++;
                    line_start = after;
                }
            }
        }
        if (text_end > text_start &&
            push_token(out, TOK_TEXT, text_start, (size_t)(text_end - text_start), tag_line) < 0) {
            goto oom;
        }
        if (push_token(out, kind, name, name_len, tag_line) < 0) {
            goto oom;
        }
        pos = text_start = after;
    }
oom:
    err_set(err, errlen, "out of memory");
    return -1;
}

/* ---- tree ---- */

static int path_init(struct path *path, const char *name, size_t len)
{
    memset(path, 0, sizeof *path);
    if (len == 1 && name[0] == '.') {
        return 0;
    }
    path->storage = malloc(len + 1);
    if (!path->storage) {
        return -1;
    }
    memcpy(path->storage, name, len);
    path->storage[len] = '\0';
    size_t count = 1;
    for (size_t i = 0; i < len; i++) {
        count += name[i] == '.';
    }
    path->segments = malloc(count * sizeof *path->segments);
    if (!path->segments) {
        free(path->storage);
        path->storage = NULL;
        return -1;
    }
    path->segments[path->count++] = path->storage;
    for (size_t i = 0; i < len; i++) {
        if (path->storage[i] == '.') {
            path->storage[i] = '\0';
            path->segments[path->count++] = path->storage + i + 1;
        }
    }
    return 0;
}

static void free_nodes(struct node *nodes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(nodes[i].path.storage);
        free(nodes[i].path.segments);
        free_nodes(nodes[i].children, nodes[i].child_count);
    }
    free(nodes);
}

struct node_list {
    struct node *items;
    size_t count, cap;
};

/* The slot is zeroed so that a failure later leaves something free_nodes can
 * take. */
static struct node *push_node(struct node_list *list)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        struct node *items = realloc(list->items, cap * sizeof *items);
        if (!items) {
            return NULL;
        }
        list->items = items;
        list->cap = cap;
    }
    struct node *n = &list->items[list->count++];
    memset(n, 0, sizeof *n);
    return n;
}

struct parser {
    const struct token *tokens;
    size_t count, next;
    char *err;
    size_t errlen;
};

/* Parses up to the {{/name}} matching open (or the end when open is NULL). */
static int parse_block(struct parser *p, const struct token *open, size_t depth, struct node_list *out)
{
    while (p->next < p->count) {
        const struct token *t = &p->tokens[p->next++];
        if (t->kind == TOK_COMMENT) {
            continue;
        }
        if (t->kind == TOK_CLOSE) {
            if (!open || open->len != t->len || memcmp(open->start, t->start, t->len) != 0) {
                err_set(p->err, p->errlen, "line %zu: unexpected {{/%.*s}}", t->line, (int)t->len, t->start);
                return -1;
            }
            return 0;
        }
        struct node *n = push_node(out);
        if (!n) {
            goto oom;
        }
        switch (t->kind) {
        case TOK_TEXT:
            n->kind = NODE_TEXT;
            n->text = t->start;
            n->text_len = t->len;
            continue;
        case TOK_VALUE:
        case TOK_JSON:
            n->kind = t->kind == TOK_VALUE ? NODE_VALUE : NODE_JSON;
            if (path_init(&n->path, t->start, t->len) < 0) {
                goto oom;
            }
            continue;
        default:
            break;
        }
        n->kind = t->kind == TOK_OPEN ? NODE_SECTION : NODE_INVERTED;
        if (depth + 1 > MAX_NESTING) {
            err_set(p->err, p->errlen, "line %zu: sections nested more than %d deep", t->line, MAX_NESTING);
            return -1;
        }
        if (path_init(&n->path, t->start, t->len) < 0) {
            goto oom;
        }
        struct node_list children = {0};
        int rc = parse_block(p, t, depth + 1, &children);
        /* n stays valid: the children grow their own list, not out. */
        n->children = children.items;
        n->child_count = children.count;
        if (rc < 0) {
            return -1;
        }
    }
    if (open) {
        err_set(p->err, p->errlen, "line %zu: unclosed section '%.*s'", open->line, (int)open->len, open->start);
        return -1;
    }
    return 0;
oom:
    err_set(p->err, p->errlen, "out of memory");
    return -1;
}

struct tmpl *tmpl_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct tmpl *t = calloc(1, sizeof *t);
    struct token_list tokens = {0};
    if (!t || !(t->source = malloc(len + 1))) {
        err_set(err, errlen, "out of memory");
        free(t);
        return NULL;
    }
    if (len) {
        memcpy(t->source, text, len);
    }
    t->source[len] = '\0';
    if (tokenize(t->source, len, &tokens, err, errlen) < 0) {
        free(tokens.items);
        tmpl_free(t);
        return NULL;
    }
    struct parser p = {tokens.items, tokens.count, 0, err, errlen};
    struct node_list nodes = {0};
    int rc = parse_block(&p, NULL, 0, &nodes);
    free(tokens.items);
    t->nodes = nodes.items;
    t->node_count = nodes.count;
    if (rc < 0) {
        tmpl_free(t);
        return NULL;
    }
    return t;
}

void tmpl_free(struct tmpl *t)
{
    if (!t) {
        return;
    }
    free_nodes(t->nodes, t->node_count);
    free(t->source);
    free(t);
}

/* ---- rendering ---- */

struct output {
    char *data;
    size_t len, cap;
    int out_of_memory;
    int too_long;
};

static int out_append(struct output *o, const char *s, size_t n)
{
    if (n > MAX_RENDER_BYTES - o->len) {
        o->too_long = 1;
        return -1;
    }
    if (o->cap - o->len <= n) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap - o->len <= n) {
            if (cap > ((size_t)-1) / 2) {
                o->out_of_memory = 1;
                return -1;
            }
            cap *= 2;
        }
        char *data = realloc(o->data, cap);
        if (!data) {
            o->out_of_memory = 1;
            return -1;
        }
        o->data = data;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
    o->data[o->len] = '\0';
    return 0;
}

static int dump_callback(const char *buffer, size_t size, void *data)
{
    return out_append(data, buffer, size);
}

struct renderer {
    struct output out;
    json_t *stack[MAX_NESTING + 1];
    size_t depth;
    unsigned long steps;
};

/* Mustache resolution: the first context (innermost first) that has the
 * first part wins, even when its value is null; the rest is looked up in it
 * alone. */
static json_t *lookup(const struct renderer *r, const struct path *path)
{
    if (path->count == 0) {
        return r->depth ? r->stack[r->depth - 1] : NULL;
    }
    json_t *v = NULL;
    for (size_t i = r->depth; i-- > 0 && !v;) {
        v = json_object_get(r->stack[i], path->segments[0]);
    }
    for (size_t k = 1; v && k < path->count; k++) {
        v = json_object_get(v, path->segments[k]);
    }
    return v;
}

static int truthy(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_length(v) > 0;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0.0;
    case JSON_TRUE:
        return 1;
    case JSON_ARRAY:
        return json_array_size(v) > 0;
    case JSON_OBJECT:
        return json_object_size(v) > 0;
    default:
        return 0;
    }
}

/* The shortest form that reads back as the same double, like Python's repr. */
static void format_real(double d, char *buf, size_t len)
{
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(buf, len, "%.*g", precision, d);
        if (strtod(buf, NULL) == d) {
            break;
        }
    }
    if (!strpbrk(buf, ".eEn")) {
        strncat(buf, ".0", len - strlen(buf) - 1);
    }
}

static int render_value(struct renderer *r, json_t *v)
{
    char number[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return out_append(&r->out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return out_append(&r->out, number, strlen(number));
    case JSON_REAL:
        format_real(json_real_value(v), number, sizeof number);
        return out_append(&r->out, number, strlen(number));
    case JSON_TRUE:
        return out_append(&r->out, "true", 4);
    case JSON_FALSE:
        return out_append(&r->out, "false", 5);
    case JSON_OBJECT:
    case JSON_ARRAY:
        return json_dump_callback(v, dump_callback, &r->out, JSON_COMPACT | JSON_ENCODE_ANY);
    default:
        return 0;
    }
}

static int render_nodes(struct renderer *r, const struct node *nodes, size_t count);

static int render_section(struct renderer *r, const struct node *n, json_t *v)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            r->stack[r->depth++] = item;
            int rc = render_nodes(r, n->children, n->child_count);
            r->depth--;
            if (rc < 0) {
                return -1;
            }
        }
        return 0;
    }
    r->stack[r->depth++] = v;
    int rc = render_nodes(r, n->children, n->child_count);
    r->depth--;
    return rc;
}

static int render_nodes(struct renderer *r, const struct node *nodes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct node *n = &nodes[i];
        int rc = 0;
        if (++r->steps > MAX_RENDER_STEPS) {
            return -1;
        }
        switch (n->kind) {
        case NODE_TEXT:
            rc = out_append(&r->out, n->text, n->text_len);
            break;
        case NODE_VALUE: {
            json_t *v = lookup(r, &n->path);
            rc = v ? render_value(r, v) : 0;
            break;
        }
        case NODE_JSON: {
            json_t *v = lookup(r, &n->path);
            rc = v ? json_dump_callback(v, dump_callback, &r->out, JSON_INDENT(2) | JSON_ENCODE_ANY)
                   : out_append(&r->out, "null", 4);
            break;
        }
        case NODE_SECTION: {
            json_t *v = lookup(r, &n->path);
            if (v && truthy(v)) {
                rc = render_section(r, n, v);
            }
            break;
        }
        case NODE_INVERTED: {
            json_t *v = lookup(r, &n->path);
            if (!v || !truthy(v)) {
                rc = render_nodes(r, n->children, n->child_count);
            }
            break;
        }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

char *tmpl_render(const struct tmpl *t, json_t *vars, char *err, size_t errlen)
{
    struct renderer *r = calloc(1, sizeof *r);
    if (!r) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    if (vars) {
        r->stack[r->depth++] = vars;
    }
    char *result = NULL;
    /* An empty rendering still has to be a string. */
    if (render_nodes(r, t->nodes, t->node_count) == 0 && out_append(&r->out, "", 0) == 0) {
        result = r->out.data; /* ownership passes to the caller */
    } else {
        free(r->out.data);
        /* jansson refuses to encode strings made with its _nocheck calls
         * when they are not UTF-8. */
        if (r->out.out_of_memory) {
            err_set(err, errlen, "out of memory");
        } else if (r->out.too_long) {
            err_set(err, errlen, "the rendered text would exceed %zu bytes", MAX_RENDER_BYTES);
        } else if (r->steps > MAX_RENDER_STEPS) {
            err_set(err, errlen, "the rendering would take more than %lu steps (sections nested over long lists)",
                    MAX_RENDER_STEPS);
        } else {
            err_set(err, errlen, "a value is not valid UTF-8");
        }
    }
    free(r);
    return result;
}
