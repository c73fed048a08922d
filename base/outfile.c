/* outfile.c - all-or-nothing output files (see outfile.h). */
#include "outfile.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lr_status lr_make_parents(const char *path, const char *what)
{
    char dir[PATH_MAX];
    if (strlen(path) >= sizeof dir)
        return lr_fail(LR_ERR_USAGE, "%s %.80s...: path too long", what, path);
    memcpy(dir, path, strlen(path) + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return LR_OK; /* in the working directory or / */
    *slash = '\0';
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? LR_OK
                                   : lr_fail(LR_ERR_IO, "%s %s: %s is not a directory", what, path, dir);
    /* each prefix ending before a '/' in turn, then the whole */
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char keep = *p;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST)
            return lr_fail(LR_ERR_IO, "%s %s: cannot create directory %s: %s", what, path, dir,
                           strerror(errno));
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return lr_fail(LR_ERR_IO, "%s %s: %s is not a directory", what, path, dir);
        *p = keep;
        if (keep == '\0')
            return LR_OK;
    }
}

lr_status lr_outfile_open(lr_outfile *o, const char *path)
{
    memset(o, 0, sizeof *o);
    if (strlen(path) >= sizeof o->path) /* the start of it: the message has 1 KiB */
        return lr_fail(LR_ERR_USAGE, "%.80s...: path too long (%zu characters, at most %zu)", path,
                       strlen(path), sizeof o->path - 1);
    memcpy(o->path, path, strlen(path) + 1);
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return LR_OK;
    }
    LR_TRY(lr_make_parents(path, "output"));
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return lr_fail(LR_ERR_IO, "%s: is a directory", path);
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device, pipe or socket (/dev/stdout, /dev/null, a FIFO): written in place, since
         * renaming over it would replace the device node itself (o->tmp stays empty) */
        o->f = fopen(path, "w");
        return o->f ? LR_OK : lr_fail(LR_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    char real[PATH_MAX];
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode) && realpath(path, real)) {
        /* a link to a file: replace the file it points to, not the link */
        if (strlen(real) >= sizeof o->path)
            return lr_fail(LR_ERR_USAGE, "%.80s...: path too long (%zu characters, at most %zu)",
                           real, strlen(real), sizeof o->path - 1);
        memcpy(o->path, real, strlen(real) + 1);
    }
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", o->path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        o->tmp[0] = '\0';
        return lr_fail(LR_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    o->f = fdopen(fd, "w");
    if (!o->f) {
        close(fd);
        unlink(o->tmp);
        o->tmp[0] = '\0';
        return lr_fail(LR_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    return LR_OK;
}

lr_status lr_outfile_commit(lr_outfile *o)
{
    if (!o->f)
        return lr_fail(LR_ERR_IO, "%s: not open", o->path);
    if (o->f == stdout) {
        o->f = NULL;
        return fflush(stdout) == 0 ? LR_OK : lr_fail(LR_ERR_IO, "stdout: write error");
    }
    bool failed = ferror(o->f) != 0;
    failed |= fflush(o->f) != 0;
    int err = errno;
    failed |= fclose(o->f) != 0;
    o->f = NULL;
    if (!o->tmp[0]) /* written in place (a device or pipe) */
        return failed ? lr_fail(LR_ERR_IO, "%s: write failed: %s", o->path,
                                strerror(err ? err : errno))
                      : LR_OK;
    if (!failed && chmod(o->tmp, 0644) == 0 && rename(o->tmp, o->path) == 0) {
        o->tmp[0] = '\0';
        return LR_OK;
    }
    err = errno;
    unlink(o->tmp);
    o->tmp[0] = '\0';
    return lr_fail(LR_ERR_IO, "%s: write failed: %s", o->path, strerror(err));
}

void lr_outfile_abort(lr_outfile *o)
{
    if (o->f && o->f != stdout)
        fclose(o->f);
    o->f = NULL;
    if (o->tmp[0])
        unlink(o->tmp);
    o->tmp[0] = '\0';
}

void lr_outfile_suffixed(const char *path, const char *suffix, bool several, char *out,
                         size_t cap)
{
    if (!several) {
        snprintf(out, cap, "%s", path);
        return;
    }
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        snprintf(out, cap, "%s-%s", path, suffix);
    else
        snprintf(out, cap, "%.*s-%s%s", (int)(dot - path), path, suffix, dot);
}
