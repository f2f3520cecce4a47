/* notify.c -- how `gpt2c serve` talks to its supervisor: log lines on stderr
 * that the systemd journal files at their level, and readiness and stopping
 * reported with sd_notify (libsystemd's, where the build found it; without
 * it a supervisor polls GET /health instead). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#ifdef GPT2C_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "internal.h"

/* 1 when stderr is the journal's stream: systemd then sets JOURNAL_STREAM to
 * its device and inode (systemd.exec(5)), and reads a "<N>" prefix as the
 * line's level. Anywhere else the prefix would only clutter the line. */
static int stderr_is_journal(void) {
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) != 0) return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void server_log(int level, const char *fmt, ...) {
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One write per line, so lines from several threads never interleave. */
    if (stderr_is_journal()) fprintf(stderr, "<%d>%s\n", level, line);
    else fprintf(stderr, "%s\n", line);
}

void server_notify(const char *state) {
#ifdef GPT2C_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}
