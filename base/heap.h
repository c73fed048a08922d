/* heap.h - how the programs ask the C library to keep freed memory. The planner's searches build
 * and free the same large row-range arrays thousands of times (a --fit at 100000x100000 input
 * evaluates thousands of plans of thousands of partitions); by default glibc returns each freed
 * block above 128 KiB to the kernel and the next build faults it in again, page by page, which
 * cost about half of such a run. Deliberately not here: any allocation of its own.
 */
#ifndef LR_HEAP_H
#define LR_HEAP_H

/* Serve blocks up to 32 MiB from the heap and return free heap memory to the kernel only past
 * 512 MiB (mallopt; a no-op elsewhere than glibc). Call once, first thing in main(). */
void heap_keep_freed(void);

#endif
