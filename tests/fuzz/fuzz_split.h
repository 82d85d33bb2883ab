/* An input made of two parts: the two bytes after the mode byte say where the
 * rest is cut.  Shared by the targets that take two texts at once. */
#ifndef GTM_FUZZ_SPLIT_H
#define GTM_FUZZ_SPLIT_H

#include <stdbool.h>
#include <stddef.h>

/* Consumes the two bytes from *text (and *len), sets *split (0..*len); false
 * when the input is too short to hold them. */
static inline bool fuzz_split(const char **text, size_t *len, size_t *split)
{
    if (*len < 2) {
        return false;
    }
    size_t at = (size_t)(unsigned char)(*text)[0] << 8 | (unsigned char)(*text)[1];
    *text += 2;
    *len -= 2;
    *split = at % (*len + 1);
    return true;
}

#endif
