/* status.h - the two tiers of errors: library functions return an lr_status and leave a
 * one-line message (naming the file, JSON path or flag) in a thread-local buffer; only main()
 * turns it into stderr text and an exit code. Broken invariants abort with file:line (LR_ASSERT).
 * Deliberately not here: printing, exit().
 */
#ifndef LR_STATUS_H
#define LR_STATUS_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LR_OK = 0,
    LR_ERR_USAGE,    /* bad flag or flag value: exit 2 */
    LR_ERR_PARSE,    /* malformed file: exit 2 */
    LR_ERR_INPUT,    /* well-formed but impossible (shape, overflow, unknown name): exit 2 */
    LR_ERR_IO,       /* cannot read or write a file: exit 1 */
    LR_ERR_NOMEM,    /* allocation failed: exit 1 */
    LR_ERR_RUNTIME,  /* a backend or tool failed at run time: exit 1 */
    LR_ERR_NODEVICE, /* asked for a device that is not there: exit 1 */
} lr_status;

#if defined(__GNUC__)
#define LR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LR_PRINTF(a, b)
#endif

/* Records the message for `code` and returns `code`, so callers write
 * `return lr_fail(LR_ERR_PARSE, "%s: layers[%d]: ...", ...)`. */
lr_status lr_fail(lr_status code, const char *fmt, ...) LR_PRINTF(2, 3);

/* The message recorded by the last lr_fail() on this thread ("" if none). */
const char *lr_last_error(void);

/* A status and its message kept where another thread reports it (messages are per thread):
 * lr_outcome_set records lr_last_error() of a failure on the thread that had it;
 * lr_outcome_report returns LR_OK or the same failure, its message recorded on this thread. */
typedef struct {
    lr_status status;
    char msg[1024]; /* as long as lr_last_error's */
} lr_outcome;
void lr_outcome_set(lr_outcome *o, lr_status status);
lr_status lr_outcome_report(const lr_outcome *o);

/* Exit code for a status: 0 ok, 2 bad usage or input, 1 runtime failure. */
int lr_exit_code(lr_status s);

#define LR_ASSERT(cond)                                                                    \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: internal error: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define LR_TRY(expr)                                                                       \
    do {                                                                                   \
        lr_status lr_try_s_ = (expr);                                                      \
        if (lr_try_s_ != LR_OK)                                                            \
            return lr_try_s_;                                                              \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
