/* half.h -- IEEE binary16 and bfloat16 conversions, exact in both
 * directions for every value a checkpoint can hold. */
#ifndef GPT2C_HALF_H
#define GPT2C_HALF_H

#include <stdint.h>
#include <string.h>

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, nan */
    if (exp == 0) {
        /* Zero or subnormal: man * 2^-24, exactly representable in f32. */
        float f = (float)man * 5.9604644775390625e-08f;
        return sign ? -f : f;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

/* f32 to binary16, rounding to nearest even; overflow gives infinity. */
static inline uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0)); /* inf, nan */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                                   /* overflow */
    if (a < 0x38800000u) { /* subnormal or zero: round a / 2^-24 to an integer */
        float m = f32_from_bits(a) * 16777216.0f; /* exact */
        uint32_t q = (uint32_t)m;
        float r = m - (float)q;
        if (r > 0.5f || (r == 0.5f && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = ((a >> 23) - 112) << 10, man = (a >> 13) & 0x3ffu, rest = a & 0x1fffu;
    uint32_t h = e | man;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | h);
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet nan */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#endif
