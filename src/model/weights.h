/* weights.h -- a checkpoint folder's weight files, found as transformers'
 * from_pretrained finds them, opened as one list of named tensors whatever
 * their format (safetensors or PyTorch), for every architecture. */
#ifndef GPT2C_MODEL_WEIGHTS_H
#define GPT2C_MODEL_WEIGHTS_H

#include "../core/safetensors.h"

/* The names transformers looks for, in its order of preference: the first
 * present wins. An index (*.index.json) lists shards in its "weight_map". */
#define WEIGHT_FILES_N 4
extern const char *const WEIGHT_FILES[WEIGHT_FILES_N];
int weights_is_index(const char *name);

/* The distinct shard file names an index lists (malloc'd array of malloc'd
 * strings), each checked to be a plain file name in the index's folder. */
gpt2c_status weights_index_shards(const char *index_path, char ***names, int *n, gpt2_err *e);
void weights_free_names(char **names, int n);

/* Opens the folder's weights: *files (n) of the first of WEIGHT_FILES
 * present, or of its shards; *where is that file's path, for messages. */
gpt2c_status weights_open(const char *dir, st_file **files, int *n, char **where, gpt2_err *e);
void weights_close(st_file *files, int n);

#endif
