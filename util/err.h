/* Error reporting without global state: every fallible function takes a
 * kb_err* and returns 0 on success, -1 on failure with err->msg filled in.
 * Messages carry context (file, shape, what was expected) so that the CLI can
 * print them as a single line and exit non-zero. */
#ifndef KB_ERR_H
#define KB_ERR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char msg[1024];
} kb_err;

/* Sets err->msg from a printf-style format; always returns -1 so that callers
 * can write `return kb_fail(err, "...")`. err may be NULL. */
int kb_fail(kb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message with more context ("while reading X: <old>"). */
int kb_fail_wrap(kb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the message. */
void kb_err_clear(kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
