/* plot_gnuplot.c - finding gnuplot on PATH and running one script in the report directory,
 * keeping gnuplot's last line of error output for the message.
 * Deliberately not here: writing the scripts (plot_*.c).
 */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

lr_status plot_find_gnuplot(char *path, size_t cap)
{
    const char *p = getenv("PATH");
    while (p && *p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        int n = len ? snprintf(path, cap, "%.*s/gnuplot", (int)len, p) : snprintf(path, cap, "./gnuplot");
        struct stat st;
        if (n > 0 && (size_t)n < cap && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            access(path, X_OK) == 0)
            return LR_OK;
        p = colon ? colon + 1 : NULL;
    }
    return lr_fail(LR_ERR_RUNTIME, "gnuplot not found on PATH: install gnuplot-nox "
                                   "(apt-get install gnuplot-nox) or omit --report");
}

/* The child: in `dir`, stdout to /dev/null, stderr to the pipe, then gnuplot. */
static void gnuplot_child(const char *gnuplot, const char *dir, const char *script, int err_fd)
{
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
    }
    dup2(err_fd, 2);
    if (chdir(dir) != 0) {
        dprintf(2, "cannot enter %s: %s\n", dir, strerror(errno));
        _exit(127);
    }
    execl(gnuplot, "gnuplot", script, (char *)NULL);
    dprintf(2, "cannot run %s: %s\n", gnuplot, strerror(errno));
    _exit(127);
}

/* Reads fd to its end, keeping the last line that has text. */
static void last_line(int fd, char *line, size_t cap)
{
    char buf[4096];
    size_t have = 0;
    line[0] = '\0';
    for (;;) {
        ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += (size_t)got;
        buf[have] = '\0';
        for (char *nl; (nl = strchr(buf, '\n')) && nl < buf + have;) {
            *nl = '\0';
            if (strspn(buf, " \t^") < strlen(buf))
                snprintf(line, cap, "%s", buf + strspn(buf, " \t"));
            have -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have);
            buf[have] = '\0';
        }
        if (have == sizeof buf - 1)
            have = 0; /* a line this long is noise */
    }
    if (have && strspn(buf, " \t^") < have)
        snprintf(line, cap, "%s", buf);
}

lr_status plot_run_gnuplot(const char *gnuplot, const char *dir, const char *name)
{
    char script[64];
    snprintf(script, sizeof script, "%s.gp", name);
    int fds[2];
    if (pipe(fds) != 0)
        return lr_fail(LR_ERR_RUNTIME, "gnuplot: cannot make a pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return lr_fail(LR_ERR_RUNTIME, "gnuplot: cannot start: %s", strerror(errno));
    }
    if (pid == 0)
        gnuplot_child(gnuplot, dir, script, fds[1]);
    close(fds[1]);
    char line[512];
    last_line(fds[0], line, sizeof line);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return LR_OK;
    return lr_fail(LR_ERR_RUNTIME, "gnuplot failed on %s/%s: %s", dir, script,
                   line[0] ? line : "no message");
}
