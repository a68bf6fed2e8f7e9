#include "util/err.h"

#include <stdio.h>
#include <string.h>

static int fail_v(kb_err *err, kb_err_kind kind, const char *fmt, va_list ap) {
    if (!err) return -1;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->kind = kind;
    return -1;
}

int kb_fail(kb_err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, KB_ERR_OTHER, fmt, ap);
    va_end(ap);
    return -1;
}

int kb_fail_as(kb_err *err, kb_err_kind kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, kind, fmt, ap);
    va_end(ap);
    return -1;
}

int kb_fail_wrap(kb_err *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%.500s: %.500s", prefix, old);
    return -1;
}

void kb_err_clear(kb_err *err) {
    if (!err) return;
    err->msg[0] = '\0';
    err->kind = KB_ERR_OTHER;
}
