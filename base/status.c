/* status.c - the thread-local error message behind lr_fail()/lr_last_error(). */
#include "status.h"

#include <stdarg.h>

static _Thread_local char last_message[1024];

lr_status lr_fail(lr_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

const char *lr_last_error(void)
{
    return last_message;
}

int lr_exit_code(lr_status s)
{
    switch (s) {
    case LR_OK:
        return 0;
    case LR_ERR_USAGE:
    case LR_ERR_PARSE:
    case LR_ERR_INPUT:
        return 2;
    default:
        return 1;
    }
}

void lr_outcome_set(lr_outcome *o, lr_status status)
{
    o->status = status;
    if (status != LR_OK)
        snprintf(o->msg, sizeof o->msg, "%s", lr_last_error());
}

lr_status lr_outcome_report(const lr_outcome *o)
{
    return o->status == LR_OK ? LR_OK : lr_fail(o->status, "%s", o->msg);
}
