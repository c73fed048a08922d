/* heap.c - see heap.h. */
#include "heap.h"

#include <stdlib.h> /* defines __GLIBC__ under glibc */
#ifdef __GLIBC__
#include <malloc.h>
#endif

void heap_keep_freed(void)
{
#ifdef __GLIBC__
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20); /* the largest mallopt takes: HEAP_MAX_SIZE / 2 */
    (void)mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}
