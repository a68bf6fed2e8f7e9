#include "util/sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

struct kb_sha256 {
    EVP_MD_CTX *md;
};

kb_sha256 *kb_sha256_new(void) {
    static const size_t sz = sizeof(kb_sha256);
    kb_sha256 *h = (kb_sha256 *)OPENSSL_zalloc(sz);
    h->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h->md, EVP_sha256(), NULL);
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

int kb_sha256_file(const char *path, uint8_t digest[32], kb_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return kb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    kb_sha256 *h = kb_sha256_new();
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) kb_sha256_update(h, buf, n);
    int bad = ferror(fp);
    fclose(fp);
    kb_sha256_final(h, digest);
    if (bad) return kb_fail(err, "%s: read error while hashing", path);
    return 0;
}
