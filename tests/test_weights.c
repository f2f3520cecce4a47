/* test_weights.c -- the PyTorch checkpoint reader against files genuine
 * transformers wrote: ../shared's GPT-Neo checkpoint saved as
 * pytorch_model.bin in the zip and the legacy format holds, tensor for
 * tensor, the bytes of its safetensors twin; and the unpickler's allow-list
 * on pickles built here. */
#include "testutil.h"

#include "core/pickle.h"
#include "core/torchbin.h"
#include "model/weights.h"

/* Every tensor of the safetensors folder `ref` is in `dir`'s weights with
 * the same dtype, shape and bytes. Returns how many were compared. */
static int same_tensors(const char *dir, const char *ref) {
    st_file *a, *b;
    int na, nb;
    char *wa, *wb;
    gpt2_err e = {0};
    if (weights_open(dir, &a, &na, &wa, &e)) fail_msg("%s", e.msg);
    if (weights_open(ref, &b, &nb, &wb, &e)) fail_msg("%s", e.msg);
    int compared = 0;
    for (int f = 0; f < nb; f++)
        for (int i = 0; i < b[f].n; i++) {
            const st_tensor *want = &b[f].tensors[i], *got = NULL;
            for (int g = 0; g < na && !got; g++) got = st_find(&a[g], want->name);
            if (!got) fail_msg("%s: tensor '%s' is missing", wa, want->name);
            if (got->dtype != want->dtype || got->ndim != want->ndim || got->nbytes != want->nbytes)
                fail_msg("%s: tensor '%s' differs in dtype or shape", wa, want->name);
            for (int d = 0; d < got->ndim; d++) assert_int_equal(got->shape[d], want->shape[d]);
            if (want->nbytes && memcmp(got->data, want->data, want->nbytes) != 0)
                fail_msg("%s: tensor '%s' holds other bytes", wa, want->name);
            compared++;
        }
    weights_close(a, na);
    weights_close(b, nb);
    free(wa);
    free(wb);
    return compared;
}

static void golden_twin(const char *name) {
    const char *g = golden_checkpoints();
    char dir[1200], ref[1200];
    snprintf(dir, sizeof dir, "%s/arch/%s", g ? g : "", name);
    snprintf(ref, sizeof ref, "%s/arch/gpt-neo-mini", g ? g : "");
    if (!g || !path_is_dir(dir)) {
        printf("skipped: %s is absent (../shared not here)\n", dir);
        skip();
    }
    int n = same_tensors(dir, ref);
    printf("%s: %d tensors equal to the safetensors twin's\n", name, n);
    assert_true(n >= 20);
}

static void test_golden_bin_zip(void **state) {
    (void)state;
    golden_twin("gpt-neo-mini-bin");
}

static void test_golden_bin_legacy(void **state) {
    (void)state;
    golden_twin("gpt-neo-mini-bin-legacy");
}

/* Unpickles p and expects a refusal whose message holds `want`. */
static void refused(const char *p, size_t n, const char *want) {
    pk_heap h = {0};
    pk_value *v;
    gpt2_err e = {0};
    gpt2c_status s = pk_load(&h, (const unsigned char *)p, n, "x.bin", &v, NULL, &e);
    pk_free(&h);
    if (s == GPT2C_OK) fail_msg("accepted a pickle that should be refused (%s)", want);
    if (!strstr(e.msg, want) || !strstr(e.msg, "x.bin")) fail_msg("message '%s' lacks '%s'", e.msg, want);
}

static void test_allow_list(void **state) {
    (void)state;
    /* os.system("ls") through GLOBAL + REDUCE, as pickle.dumps of a
     * __reduce__ payload writes it (protocol 2). */
    static const char sys2[] = "\x80\x02" "cos\nsystem\n" "X\x02\x00\x00\x00ls" "\x85R.";
    refused(sys2, sizeof sys2 - 1, "refusing to load global 'os.system'");
    /* builtins.eval through STACK_GLOBAL (protocol 4). */
    static const char eval4[] = "\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93" "\x8c\x01" "1" "\x85R.";
    refused(eval4, sizeof eval4 - 1, "refusing to load global 'builtins.eval'");
    /* An allowed global called as it never is in a checkpoint. */
    static const char bad_call[] = "\x80\x02" "ctorch\nFloatStorage\n" ")R.";
    refused(bad_call, sizeof bad_call - 1, "called as a function");
    /* Opcodes a state dict never uses: INST (protocol 0 object creation). */
    static const char inst[] = "(ios\nsystem\nS'ls'\n.";
    refused(inst, sizeof inst - 1, "opcode 0x69 is not allowed");
    /* Memo abuse: a BINGET of an index never stored; a huge LONG_BINPUT. */
    static const char get[] = "\x80\x02h\x05.";
    refused(get, sizeof get - 1, "never stored");
    static const char put[] = "\x80\x02N" "r\x00\x00\x00\xf0" ".";
    refused(put, sizeof put - 1, "memo index");
    /* Truncated: no STOP. */
    static const char trunc[] = "\x80\x02}q\x00(";
    refused(trunc, sizeof trunc - 1, "without STOP");
    /* A state dict: OrderedDict() then items, accepted. */
    static const char ok[] = "\x80\x02" "ccollections\nOrderedDict\n" ")R" "X\x01\x00\x00\x00" "a" "K\x07" "s.";
    pk_heap h = {0};
    pk_value *v;
    gpt2_err e = {0};
    assert_int_equal(pk_load(&h, (const unsigned char *)ok, sizeof ok - 1, "x.bin", &v, NULL, &e), GPT2C_OK);
    assert_int_equal(v->kind, PK_DICT);
    assert_int_equal(v->n, 2);
    assert_true(pk_str_is(v->items[0], "a"));
    assert_int_equal(v->items[1]->i, 7);
    pk_free(&h);
}

/* Deep nesting costs no stack: a million MARKs, then a refusal. */
static void test_deep_nesting(void **state) {
    (void)state;
    size_t n = 1000000;
    char *p = malloc(n + 3);
    p[0] = '\x80';
    p[1] = 2;
    memset(p + 2, '(', n);
    p[n + 2] = '.';
    refused(p, n + 3, "pickle");
    memset(p + 2, ']', n); /* a million empty lists: more objects than a state dict holds */
    refused(p, n + 3, "pickle");
    free(p);
}

/* Two zip entries overlapping with an empty one between them in data order
 * (found by the hostile cases' review: only neighbours were compared). */
static void test_zip_overlap_past_empty(void **state) {
    (void)state;
    st_file f;
    gpt2_err e = {0};
    assert_int_not_equal(tb_open("tests/fuzz/regress/torchbin-zip-overlap-past-empty", &f, &e), GPT2C_OK);
    st_close(&f);
    if (!strstr(e.msg, "overlap")) fail_msg("message '%s' lacks 'overlap'", e.msg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bin_zip), cmocka_unit_test(test_golden_bin_legacy),
        cmocka_unit_test(test_allow_list), cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_zip_overlap_past_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
