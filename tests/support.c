/* support.c - see support.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "support.h"

net_t *test_zoo(const char *name)
{
    net_t *net = NULL;
    if (net_open(name, &net) != LR_OK)
        fail_msg("net_open(%s): %s", name, lr_last_error());
    return net;
}

net_t *test_parse(const char *json)
{
    net_t *net = NULL;
    if (net_parse(json, strlen(json), "test", &net) != LR_OK)
        fail_msg("net_parse: %s", lr_last_error());
    return net;
}
