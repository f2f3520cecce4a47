/* neon.c -- the SIMD kernels on 4-float vectors (AArch64 Advanced SIMD,
 * which every AArch64 CPU has, half-precision conversions included). The
 * same source as the x86 kernels (../simd_impl.h) over NEON intrinsics. */
#include <arm_neon.h>

typedef float32x4_t VEC;
#define VW 4
#define NV 3 /* a tile is 6 rows x 3 vectors: 18 accumulators of 32 registers */
#define MR 6
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VSET1(x) vdupq_n_f32(x)
#define VZERO() vdupq_n_f32(0.0f)
#define VFMA(a, b, c) vfmaq_f32(c, a, b) /* a * b + c, rounded once */
#define VMUL(a, b) vmulq_f32(a, b)
#define VADD(a, b) vaddq_f32(a, b)
#define VSUB(a, b) vsubq_f32(a, b)
#define VDIV(a, b) vdivq_f32(a, b)
#define VSQRT(a) vsqrtq_f32(a)
/* The "number" forms, as x86's min/max give the number when the other operand is NaN. */
#define VMIN(a, b) vminnmq_f32(a, b)
#define VMAX(a, b) vmaxnmq_f32(a, b)
#define VABS(a) vabsq_f32(a)
#define VCOPYSIGN(mag, sgn) vbslq_f32(vdupq_n_u32(0x80000000u), sgn, mag)
#define VROUND(a) vrndnq_f32(a) /* to nearest, ties to even */
/* p * 2^n for integral n in [-126, 127] (vexp clamps its input to that). */
#define VSCALE2(p, n) \
    vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23)))
#define VLOAD_F16(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(p))))
#define VLOAD_BF16(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)(p)), 16))

/* Q8: 8 int8 weights (4 columns x a k pair) widened to int16; the pairwise
 * multiply-add is two widening multiplies and a pairwise add, exact. */
typedef int32x4_t IVEC;
typedef int16x8_t WVEC;
#define IZERO() vdupq_n_s32(0)
#define ILOAD_I8X2(p) vmovl_s8(vld1_s8(p))
#define ISET1(v) vreinterpretq_s16_s32(vdupq_n_s32(v))
#define IDOT(acc, w, x) vaddq_s32(acc, vpaddq_s32(vmull_s16(vget_low_s16(w), vget_low_s16(x)), vmull_high_s16(w, x)))
#define IADD(a, b) vaddq_s32(a, b)
#define ICVT(a) vcvtq_f32_s32(a)

/* A fixed reduction order: halves folded down to one lane. */
static inline float VREDUCE(VEC v) {
    float32x2_t h = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
}

#define FN(name) name##_neon
#define KERNELS_NAME "neon" /* simd_impl.h ends with the table, gpt2_kernels_neon */
#include "../simd_impl.h"
