/* A bump allocator for memory that dies with a request: one embedded first
 * block, further blocks from malloc, all released at once by arena_reset. */
#ifndef GTM_ARENA_H
#define GTM_ARENA_H

#include <stddef.h>

struct arena_block;

struct arena {
    char *cur;                    /* next free byte in the current block */
    char *end;
    struct arena_block *extra;    /* malloc'd blocks, newest first */
    char *first;                  /* the embedded block (not owned) */
    size_t first_size;
};

void arena_init(struct arena *a, void *first, size_t first_size);
/* 16-byte aligned memory, or NULL when memory ran out. */
void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
/* Frees the extra blocks and rewinds to the embedded one. */
void arena_reset(struct arena *a);

#endif
