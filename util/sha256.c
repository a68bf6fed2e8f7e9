#include "util/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct kb_sha256 {
    EVP_MD_CTX *md;
};

kb_sha256 *kb_sha256_new(void) {
    static const size_t sz = sizeof(kb_sha256);
    kb_sha256 *h = (kb_sha256 *)OPENSSL_zalloc(sz);
    if (!h) return NULL;
    if (!(h->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->md); /* NULL is fine */
        OPENSSL_free(h);
        return NULL;
    }
    return h;
}

void kb_sha256_update(kb_sha256 *h, const void *data, size_t n) { EVP_DigestUpdate(h->md, data, n); }

void kb_sha256_final(kb_sha256 *h, uint8_t digest[32]) {
    unsigned int len = 32;
    EVP_DigestFinal_ex(h->md, digest, &len);
    EVP_MD_CTX_free(h->md);
    OPENSSL_free(h);
}

int kb_sha256_hex_of(const void *data, size_t n, char out[65]) {
    uint8_t digest[32];
    kb_sha256 *h = kb_sha256_new();
    if (!h) return -1;
    kb_sha256_update(h, data, n);
    kb_sha256_final(h, digest);
    kb_sha256_hex(digest, out);
    return 0;
}

void kb_sha256_hex(const uint8_t digest[32], char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

int kb_sha256_fd(int fd, const char *what, uint8_t digest[32], kb_err *err) {
    kb_sha256 *h = kb_sha256_new();
    if (!h) return kb_fail(err, "%s: cannot start a SHA-256", what);
    unsigned char buf[1 << 16];
    ssize_t n;
    off_t at = 0;
    while ((n = pread(fd, buf, sizeof buf, at)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) kb_sha256_update(h, buf, (size_t)n), at += n;
    int e = errno;
    kb_sha256_final(h, digest);
    if (n < 0) return kb_fail(err, "%s: read error while hashing: %s", what, strerror(e));
    return 0;
}

int kb_sha256_file(const char *path, uint8_t digest[32], kb_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    int rc = kb_sha256_fd(fd, path, digest, err);
    close(fd);
    return rc;
}
