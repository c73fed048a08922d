/* support.c - see support.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support.h"

/* LRCNN_TEST_FILTER=PATTERN runs only the tests whose names match (cmocka's * and ? globs), in
 * every test program: `LRCNN_TEST_FILTER='*offload*' build/tests/test_auto`. */
__attribute__((constructor)) static void test_filter(void)
{
    const char *f = getenv("LRCNN_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
}

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
