/*
 * parallel.h: a fork-join loop over [0, n) for the CPU library. Threads are started per call and
 * joined before it returns (no pool, no state between calls): the buffers worth splitting take
 * milliseconds, and starting a thread takes tens of microseconds.
 */
#ifndef TRTB_PARALLEL_H
#define TRTB_PARALLEL_H

#include <stdint.h>

#include "internal.h"

/* Work on items [begin, end). */
typedef void (*trtb__range_fn)(void *ctx, uint64_t begin, uint64_t end);

/* Call fn over [0, n) split into contiguous chunks of at least `grain` items (except the last),
 * one chunk per thread, at most trtb__num_threads() threads. The calling thread takes the first
 * chunk. If a thread cannot be started its chunk runs on the calling thread, so this never fails.
 * Chunk boundaries are multiples of `align` (> 0). */
TRTB_HIDDEN void trtb__parallel_for(uint64_t n, uint64_t grain, uint64_t align, trtb__range_fn fn, void *ctx);

/* Threads the library may use now: the trtb_set_num_threads setting, or the CPUs this process may
 * run on when it is 0. */
TRTB_HIDDEN int32_t trtb__num_threads(void);

#endif
