# gpt2c build. `make` builds the library (static and shared) and the CLI;
# `make test` builds and runs the whole test suite; `make SAN=1 test` does the
# same under AddressSanitizer + UndefinedBehaviorSanitizer in build-san/;
# `make check` runs both.
CC ?= cc
PYTHON ?= /usr/bin/python3
ifeq ($(SAN),1)
BUILD ?= build-san
OPT ?= -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDSAN = -fsanitize=address,undefined
else
BUILD ?= build
OPT ?= -O2
LDSAN =
endif
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -Iinclude -Wall -Wextra -Werror -g -fPIC $(OPT)
LDLIBS = -lcurl -lcrypto -lpcre2-8 -ljansson -lm -lpthread

LIB_SRC = $(wildcard src/core/*.c src/kernels/*.c src/kernels/generic/*.c src/model/*.c \
                     src/tokenizer/*.c src/generate/*.c src/hub/*.c)
# ISA-specific kernels: only these files are built for those instruction sets,
# and the dispatcher runs them only where CPUID says they exist.
ifeq ($(shell uname -m),x86_64)
LIB_SRC += src/kernels/x86/avx2.c src/kernels/x86/avx512.c
endif
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/cli/*.c))
TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))

all: $(BUILD)/libgpt2c.a $(BUILD)/libgpt2c.so $(BUILD)/gpt2c

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*/*.h src/*/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/src/kernels/x86/avx2.o: CFLAGS += -mavx2 -mfma -mf16c
$(BUILD)/src/kernels/x86/avx512.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c

$(BUILD)/libgpt2c.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libgpt2c.so: $(LIB_OBJ)
	$(CC) -shared $(LDSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/gpt2c: $(CLI_OBJ) $(BUILD)/libgpt2c.a
	$(CC) $(LDSAN) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libgpt2c.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libgpt2c.a $(LDLIBS) -lcmocka $(LDSAN)

tests: all $(TESTS)

# Runs every test program and script; prints one summary line.
test: tests
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run.sh

# The README's test command: the whole suite plainly, under ASan + UBSan,
# built by clang, then each fuzz target for a short bounded run over its
# committed corpus and the inputs that once crashed (tests/fuzz/regress).
FUZZ_SECONDS ?= 30
check:
	$(MAKE) test
	$(MAKE) SAN=1 test
	$(MAKE) CC=clang BUILD=build-clang test
	$(MAKE) fuzz-smoke
	@echo "check: 4 passed, 0 failed (plain, sanitizers, clang, fuzz; each stage stops the run on failure)"

fuzz-smoke: fuzz
	for f in tests/fuzz/regress/*; do n=$${f##*/}; build-fuzz/fuzz_$${n%%-*} $$f || exit 1; done
	for t in $(basename $(notdir $(wildcard tests/fuzz/*.c))); do \
	  rm -rf build-fuzz/corpus_$$t && cp -r tests/fuzz/corpus_$${t#fuzz_} build-fuzz/corpus_$$t && \
	  build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/ build-fuzz/corpus_$$t > build-fuzz/$$t.log 2>&1 \
	    || { tail -n 40 build-fuzz/$$t.log; echo "FAILED: $$t (input saved under build-fuzz/)"; exit 1; }; \
	  echo "$$t: $$(grep -o 'number_of_executed_units: [0-9]*' build-fuzz/$$t.log) in $(FUZZ_SECONDS) s, no crash"; \
	done

# libFuzzer targets (clang): make fuzz, then e.g.
#   build-fuzz/fuzz_text -max_total_time=600 tests/fuzz/corpus_text
FUZZ_CFLAGS = -std=c11 -D_DEFAULT_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
fuzz: $(wildcard tests/fuzz/*.c) $(LIB_SRC)
	@mkdir -p build-fuzz
	for t in $(basename $(notdir $(wildcard tests/fuzz/*.c))); do \
	  clang $(FUZZ_CFLAGS) -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq \
	    -o build-fuzz/$$t tests/fuzz/$$t.c $(LIB_SRC) $(LDLIBS) || exit 1; done

clean:
	rm -rf build build-san build-fuzz

.PHONY: all tests test check fuzz fuzz-smoke clean
