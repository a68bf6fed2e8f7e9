/* SHA-256 through OpenSSL's libcrypto (a well-kept library; we do not
 * hand-write hashes). Used for dataset cache checksums and weight files. */
#ifndef KB_SHA256_H
#define KB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct kb_sha256 kb_sha256;

/* NULL when out of memory. */
kb_sha256 *kb_sha256_new(void);
void kb_sha256_update(kb_sha256 *h, const void *data, size_t n);
/* Writes the 32-byte digest and frees h. */
void kb_sha256_final(kb_sha256 *h, uint8_t digest[32]);
/* Lower-case hex of a 32-byte digest into out[65]. */
void kb_sha256_hex(const uint8_t digest[32], char out[65]);
/* Lower-case hex digest of n bytes into out[65] (cache keys, stamp names);
 * -1 when no hash could be started (out of memory). */
int kb_sha256_hex_of(const void *data, size_t n, char out[65]);
/* Digest of a whole file, streamed. */
int kb_sha256_file(const char *path, uint8_t digest[32], kb_err *err);
/* The same of the file fd names, from offset 0 (pread: fd's offset is left
 * alone); `what` names it in messages. */
int kb_sha256_fd(int fd, const char *what, uint8_t digest[32], kb_err *err);

#endif
