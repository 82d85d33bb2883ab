#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t size;
    char data[];
};

#define ARENA_ALIGN 16
#define ARENA_BLOCK_MIN 8192

void arena_init(struct arena *a, void *first, size_t first_size)
{
    a->first = first;
    a->first_size = first_size;
    a->extra = NULL;
    a->cur = first;
    a->end = (char *)first + first_size;
}

static char *align_up(char *p)
{
    uintptr_t v = (uintptr_t)p;
    return (char *)((v + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1));
}

void *arena_alloc(struct arena *a, size_t n)
{
    if (n == 0) {
        n = 1;
    }
    char *p = align_up(a->cur);
    if (p <= a->end && (size_t)(a->end - p) >= n) {
        a->cur = p + n;
        return p;
    }
    size_t size = n + ARENA_ALIGN > ARENA_BLOCK_MIN ? n + ARENA_ALIGN : ARENA_BLOCK_MIN;
    struct arena_block *b = malloc(sizeof *b + size);
    if (!b) {
        return NULL;
    }
    b->next = a->extra;
    b->size = size;
    a->extra = b;
    p = align_up(b->data);
    a->cur = p + n;
    a->end = b->data + size;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

void arena_reset(struct arena *a)
{
    while (a->extra) {
        struct arena_block *next = a->extra->next;
        free(a->extra);
        a->extra = next;
    }
    a->cur = a->first;
    a->end = a->first + a->first_size;
}
