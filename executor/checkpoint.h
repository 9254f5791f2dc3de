/* checkpoint.h — checkpoints that are either whole or ignored.
 *
 * A checkpoint of step N is a folder DIR/step_<N> holding the parameters and
 * the AdamW moments as raw little-endian fp32 files, tensors addressed by
 * name and global shape in MANIFEST (written last), each file with its
 * CRC-32. Writing goes to DIR/step_<N>.tmp, every file is fsynced, the
 * MANIFEST is written and fsynced, and only then is the folder renamed into
 * place; older checkpoints beyond `keep` are deleted after that. Resuming
 * takes the newest folder with a MANIFEST, checks every file's size and
 * CRC, and refuses a damaged one with one line.
 *
 * The data position and the RNG need no saving: every sample is a pure
 * function of (source, global sample index) and the index follows from the
 * step, so a resumed run continues bit for bit.
 */
#ifndef TRIAD_CHECKPOINT_H
#define TRIAD_CHECKPOINT_H

#include "../common/spec.h"
#include "model.h"

/* Write step `step` (params, m, v of md's n_params elements). Returns 0 or
 * -1 with err. */
int exec_ckpt_save(const char *dir, int step, const exec_model *md, const float *m, const float *v, int keep,
                   char err[SPEC_ERR_LEN]);

/* Newest complete checkpoint in dir: 0 and *step, or 1 when there is none,
 * or -1 with err (damaged checkpoint, shape mismatch). Loads params, m, v. */
int exec_ckpt_load_latest(const char *dir, exec_model *md, float *m, float *v, int *step, char err[SPEC_ERR_LEN]);

/* CRC-32 (IEEE 802.3) of a buffer, continuing from crc (0 to start). */
uint32_t exec_crc32(uint32_t crc, const void *buf, size_t n);

#endif
