/* data.h - training data: Fashion-MNIST from Debian's dataset-fashion-mnist package (idx files,
 * gzip-compressed, read through `gzip -dc`), or synthetic batches for large inputs.
 *
 * Legend: N images, C channels, H/W height/width.
 * Deliberately not here: augmentation, shuffling policy beyond a seeded permutation.
 */
#ifndef LR_DATA_H
#define LR_DATA_H

#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DATA_FASHION_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    int n, c, h, w;
    float *images;   /* (N, C, H, W), normalised to mean 0, std 1 over the training set */
    int32_t *labels; /* (N) */
} data_set;

/* Loads `train` or `t10k` from dir (DATA_FASHION_DIR or $LRCNN_FASHION_MNIST), at most
 * `limit` images (0: all). Errors name the file: missing, truncated, bad magic, label count
 * not matching image count. Pixel values become (x/255 - 0.2860) / 0.3530. */
lr_status data_load_fashion(const char *dir, const char *split, int limit, data_set *out);

/* A deterministic synthetic set (Gaussian images, labels in [0, classes)). */
lr_status data_synthetic(int n, int c, int h, int w, int classes, uint64_t seed, data_set *out);

void data_free(data_set *d);

/* A seeded permutation of [0, n). */
void data_permutation(int n, uint64_t seed, int *perm);

/* Copies images perm[from .. from+count) into a batch buffer (count*C*H*W floats). */
void data_gather(const data_set *d, const int *perm, int from, int count, float *images,
                 int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif
