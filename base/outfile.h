/* outfile.h - output files written all or nothing: text goes to PATH.tmp.XXXXXX in the same
 * directory and is renamed over PATH only when complete, so an interrupted or failed run never
 * leaves a truncated file behind. PATH "-" means stdout (written directly); so are devices and
 * pipes (/dev/stdout, /dev/null, a FIFO: a rename would replace the device node), where a write
 * error still fails the commit. A symbolic link to a file has the file replaced, not the link.
 * Deliberately not here: formatting.
 */
#ifndef LR_OUTFILE_H
#define LR_OUTFILE_H

#include <stdbool.h>
#include <stdio.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *f;
    char path[1024];
    char tmp[1060];
} lr_outfile;

/* Creates the directories that lead to `path` (its parent and theirs, as `mkdir -p` would),
 * leaving existing ones alone. LR_ERR_IO naming `what` (the flag) and the directory that could not
 * be made, or the component that exists and is not a directory. */
lr_status lr_make_parents(const char *path, const char *what);

/* Opens a temporary file beside `path`, creating missing parent directories first
 * (lr_make_parents). LR_ERR_IO (naming the path) when it cannot. */
lr_status lr_outfile_open(lr_outfile *o, const char *path);

/* Flushes, closes and renames into place. On any write error the temporary file is removed
 * and LR_ERR_IO names the path. */
lr_status lr_outfile_commit(lr_outfile *o);

/* FILE.csv -> FILE-2ps.csv: the path with "-suffix" before its extension when `several`
 * outputs share one name (several strategies writing a timeline), else the path itself. */
void lr_outfile_suffixed(const char *path, const char *suffix, bool several, char *out,
                         size_t cap);

/* Closes and removes the temporary file; safe on a never-opened or committed outfile. */
void lr_outfile_abort(lr_outfile *o);

#ifdef __cplusplus
}
#endif
#endif
