/* A growable byte buffer with a read offset, for socket input and output. */
#ifndef GTM_BUF_H
#define GTM_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;     /* bytes held, counted from data[0] */
    size_t off;     /* bytes already consumed from the front */
    size_t cap;
};

/* 0, or -1 when memory ran out (the buffer is unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops n bytes from the front; compacts lazily. */
void buf_consume(struct buf *b, size_t n);
static inline size_t buf_pending(const struct buf *b) { return b->len - b->off; }
static inline const char *buf_head(const struct buf *b) { return b->data + b->off; }
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
