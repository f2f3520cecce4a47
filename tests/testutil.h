/* testutil.h -- small helpers shared by the cmocka test programs: locating
 * fixtures, reading JSON golden files, and skipping with a reason when data
 * that lives outside the repository (../shared) is absent. */
#ifndef GPT2C_TESTUTIL_H
#define GPT2C_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "gpt2c.h"

/* TEST_SANITIZED: 1 in the sanitizer builds (SAN=1, gcc or clang). They
 * look for memory errors and undefined behaviour, which the shapes and code
 * paths decide rather than the volume, and run 3-5 times slower: the
 * heaviest statistical and numeric sweeps run smaller there, saying so, and
 * whole in the plain build. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif

/* Fixtures committed to the repository (tests run from its root). */
#define FIXTURES "tests/fixtures"
#define TOKENIZER_DIR FIXTURES "/gpt2-tokenizer"
#define GOLDEN_JSON_DIR FIXTURES "/golden"

static inline int path_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The golden checkpoints live in ../shared/golden (GPT2C_GOLDEN overrides);
 * NULL when absent. */
static inline const char *golden_checkpoints(void) {
    static char buf[1024];
    const char *g = getenv("GPT2C_GOLDEN");
    snprintf(buf, sizeof buf, "%s/checkpoints", g ? g : "../shared/golden");
    return path_is_dir(buf) ? buf : NULL;
}

static inline json_t *load_json_or_fail(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j) fail_msg("%s: %s (line %d)", path, je.text, je.line);
    return j;
}

/* ids from a JSON array; caller frees. */
static inline int32_t *json_ids(json_t *arr, int *n) {
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

static inline void assert_ids_equal(const int32_t *a, int na, const int32_t *b, int nb, const char *what) {
    if (na != nb) fail_msg("%s: %d ids, expected %d", what, na, nb);
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) fail_msg("%s: id %d is %d, expected %d", what, i, a[i], b[i]);
}

static inline void assert_str_equal_n(const char *got, size_t gl, const char *want, size_t wl, const char *what) {
    if (gl != wl || memcmp(got, want, gl) != 0)
        fail_msg("%s: got \"%.*s\" (%zu bytes), expected \"%.*s\" (%zu bytes)", what, (int)gl, got, gl, (int)wl,
                 want, wl);
}

#endif
