/* with_rows.h -- WITH_ROWS, the switch that turns a tile's run-time row
 * count into a compile-time constant, shared by the kernels written over
 * vector macros (simd_impl.h) and the hand-written bf16 product
 * (x86/avx512bf16.c). */
#ifndef GPT2C_KERNELS_WITH_ROWS_H
#define GPT2C_KERNELS_WITH_ROWS_H

/* Runs CALL, an expression that names R_, with R_ a compile-time constant
 * equal to rows (1 to max, max at most 8), so that the tile loops over rows
 * unroll and keep their accumulators in registers. */
#define WITH_ROWS(rows, max, CALL)                                                                                  \
    switch (rows) {                                                                                                \
    case 1: { enum { R_ = 1 }; CALL; break; }                                                                      \
    case 2: { enum { R_ = 2 < (max) ? 2 : (max) }; CALL; break; }                                                  \
    case 3: { enum { R_ = 3 < (max) ? 3 : (max) }; CALL; break; }                                                  \
    case 4: { enum { R_ = 4 < (max) ? 4 : (max) }; CALL; break; }                                                  \
    case 5: { enum { R_ = 5 < (max) ? 5 : (max) }; CALL; break; }                                                  \
    case 6: { enum { R_ = 6 < (max) ? 6 : (max) }; CALL; break; }                                                  \
    case 7: { enum { R_ = 7 < (max) ? 7 : (max) }; CALL; break; }                                                  \
    default: { enum { R_ = (max) }; CALL; break; }                                                                 \
    }

#endif
