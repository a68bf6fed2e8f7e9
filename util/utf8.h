/* UTF-8 validity (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF): metadata written as JSON must be valid UTF-8, or readers such
 * as Python's json.loads refuse the whole file. */
#ifndef KB_UTF8_H
#define KB_UTF8_H

#include <stddef.h>

/* Byte offset of the first invalid sequence in s, or -1 when s is valid. */
static inline long kb_utf8_invalid_at(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i];) {
        unsigned c = p[i];
        int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || (n == 1 && c < 0xC2) || (c == 0xF4 && p[i + 1] > 0x8F) || c > 0xF4) return (long)i;
        if ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F) || (c == 0xF0 && p[i + 1] < 0x90))
            return (long)i; /* overlong, surrogate, overlong */
        for (int k = 1; k <= n; k++)
            if ((p[i + k] & 0xC0) != 0x80) return (long)i;
        i += (size_t)n + 1;
    }
    return -1;
}

#endif
