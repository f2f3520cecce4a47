/* err.c -- status strings and the error record shared by all modules. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

gpt2c_status err_set(gpt2_err *e, gpt2c_status s, const char *fmt, ...) {
    if (e == NULL || e->status != GPT2C_OK) return e ? e->status : s;
    e->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return s;
}

void err_clear(gpt2_err *e) {
    e->status = GPT2C_OK;
    e->msg[0] = '\0';
}

const char *err_msg_or_nomem(const gpt2_err *e) {
    if (e == NULL) return "out of memory";
    return e->status == GPT2C_OK ? "no error" : e->msg;
}

const char *gpt2c_status_string(gpt2c_status s) {
    switch (s) {
    case GPT2C_OK: return "ok";
    case GPT2C_ERR_IO: return "I/O error";
    case GPT2C_ERR_FORMAT: return "format error";
    case GPT2C_ERR_UNSUPPORTED: return "unsupported";
    case GPT2C_ERR_INVALID: return "invalid argument";
    case GPT2C_ERR_NOMEM: return "out of memory";
    case GPT2C_ERR_CONTEXT: return "context length exceeded";
    case GPT2C_DONE: return "done";
    case GPT2C_ERR_NOT_FOUND: return "not found";
    case GPT2C_ERR_PERMISSION: return "permission denied";
    case GPT2C_ERR_NETWORK: return "network error";
    case GPT2C_ERR_BUSY: return "busy";
    }
    return "unknown status";
}

const char *gpt2c_version(void) { return GPT2C_VERSION; }
