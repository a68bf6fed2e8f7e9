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

/* What failed, for the few callers that act on it rather than only report
 * it: `data prepare --skip-unreadable` leaves out an image whose error is
 * KB_ERR_BAD_DATA and stops at any other. Set where the failure is found
 * (kb_fail_as); anything not marked is KB_ERR_OTHER, so an error nobody
 * classified is never mistaken for a bad file. */
typedef enum {
    KB_ERR_OTHER = 0, /* the machine or the program: out of memory, an I/O error, a file that cannot be opened */
    KB_ERR_BAD_DATA,  /* the input's own bytes: corrupt, truncated, empty, not an image, impossible dimensions */
} kb_err_kind;

typedef struct {
    char msg[1024];
    kb_err_kind kind;
} kb_err;

/* Sets err->msg from a printf-style format and err->kind to KB_ERR_OTHER;
 * always returns -1 so that callers can write `return kb_fail(err, "...")`.
 * err may be NULL. */
int kb_fail(kb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* kb_fail with the kind of failure given. */
int kb_fail_as(kb_err *err, kb_err_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with more context ("while reading X: <old>");
 * the kind is kept. */
int kb_fail_wrap(kb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the message and the kind. */
void kb_err_clear(kb_err *err);

#ifdef __cplusplus
}
#endif

#endif
