/* Strict base64url (RFC 4648 section 5) without padding, as JOSE uses it.
 * Strict because a token must have exactly one spelling: padding, characters
 * outside the URL-safe alphabet and stray low bits in the last character are
 * all refused rather than tolerated. */
#ifndef GTM_B64URL_H
#define GTM_B64URL_H

#include <stddef.h>

/* The number of bytes len characters decode to, or (size_t)-1 when no
 * unpadded encoding has that length (len % 4 == 1). */
size_t b64url_decoded_len(size_t len);

/* Decodes in[0..len) into out (room for outcap bytes).  0 with *outlen set,
 * or -1 when the input is not canonical unpadded base64url or does not fit;
 * out may then hold garbage. */
int b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen);

#endif
