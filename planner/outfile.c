/* outfile.c - all-or-nothing output files (see outfile.h). */
#include "outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lr_status lr_outfile_open(lr_outfile *o, const char *path)
{
    memset(o, 0, sizeof *o);
    if (strlen(path) >= sizeof o->path)
        return lr_fail(LR_ERR_USAGE, "%s: path too long", path);
    memcpy(o->path, path, strlen(path) + 1);
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return LR_OK;
    }
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", path);
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
    failed |= fclose(o->f) != 0;
    o->f = NULL;
    if (!failed && chmod(o->tmp, 0644) == 0 && rename(o->tmp, o->path) == 0) {
        o->tmp[0] = '\0';
        return LR_OK;
    }
    int err = errno;
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
