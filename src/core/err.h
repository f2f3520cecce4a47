/* err.h -- how library code reports a failure: a status plus a message that
 * names the file, field or parameter at fault. */
#ifndef GPT2C_ERR_H
#define GPT2C_ERR_H

#include "gpt2c.h"

typedef struct gpt2_err {
    gpt2c_status status;
    char msg[512];
} gpt2_err;

/* Records a failure (printf-style message) and returns its status, so that
 * callers can write `return err_set(e, GPT2C_ERR_FORMAT, "...")`. The first
 * failure wins: a later err_set on an already failed record keeps the
 * original message, which is the one that names the root cause. */
gpt2c_status err_set(gpt2_err *e, gpt2c_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void err_clear(gpt2_err *e);
/* A message for a handle that may be NULL because its allocation failed. */
const char *err_msg_or_nomem(const gpt2_err *e);

#endif
