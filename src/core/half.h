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

#endif
