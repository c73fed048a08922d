/* support.h - helpers every CMocka suite uses (linked into each test binary): networks from the
 * zoo or from JSON text, failing the running test with the loader's message when they do not
 * load. Include after <cmocka.h>. */
#ifndef LR_TEST_SUPPORT_H
#define LR_TEST_SUPPORT_H

#include "net.h"

net_t *test_zoo(const char *name);  /* net_open, or fail the test */
net_t *test_parse(const char *json); /* net_parse as file "test", or fail the test */

#endif
