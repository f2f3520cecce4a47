/* torchbin.h -- reading a PyTorch checkpoint (pytorch_model.bin) as
 * torch.save writes a state dict: the zip format (torch >= 1.6) or the
 * legacy one (a row of pickles followed by the raw storages), through the
 * restricted unpickler of pickle.h. */
#ifndef GPT2C_TORCHBIN_H
#define GPT2C_TORCHBIN_H

#include "safetensors.h"

/* Maps `path` and lists its tensors as safetensors.h does: contiguous
 * tensors point into the mapping, strided ones are copied. */
gpt2c_status tb_open(const char *path, st_file *f, gpt2_err *e);

#endif
