/* Filling a caller's error buffer: the one way this code reports why. */
#ifndef GTM_ERR_H
#define GTM_ERR_H

#include <stddef.h>

/* Formats into err (when not NULL and errlen > 0) as one line: CR and LF
 * (libpq's and mbedTLS's messages carry them) become spaces, trailing ones go. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
