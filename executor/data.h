/* data.h — training data: a Markov source with a known entropy rate, and
 * token shards in the llm.c format.
 *
 * A data spec is either
 *   markov:vocab=V,order=K,seed=S   an endless stream from a random order-K
 *                                   Markov chain over V symbols
 *   a path to a .bin shard          1024-byte header of 256 int32 (magic
 *                                   20240520, version 1, token count), then
 *                                   uint16 tokens
 * Sample i of the run (its global index in training order) is a pure
 * function of (source, i), so every layout sees the same batches.
 */
#ifndef TRIAD_DATA_H
#define TRIAD_DATA_H

#include <stdint.h>

#include "../common/spec.h"

#define DATA_SHARD_MAGIC 20240520
#define DATA_SHARD_VERSION 1

typedef struct exec_data exec_data;

/* Open a source for sequences of seq tokens (plus one target). Checks the
 * shard header and size, and that tokens fit the vocabulary. */
int exec_data_open(const char *spec, int64_t seq, int64_t vocab, exec_data **out, char err[SPEC_ERR_LEN]);
void exec_data_close(exec_data *d);

/* tokens and targets (seq each) of global sample i. */
void exec_data_sample(const exec_data *d, int64_t i, int *tokens, int *targets);

/* Entropy rate of a Markov source in nats per token (exact, from the
 * stationary distribution); -1 for a shard. */
double exec_data_entropy_rate(const exec_data *d);
/* Vocabulary size the source needs. */
int64_t exec_data_vocab(const exec_data *d);

/* Byte-level shard from a text file (token = byte, vocabulary 256). */
int exec_data_text_to_shard(const char *text_path, const char *out_path, int force, char err[SPEC_ERR_LEN]);

#endif
