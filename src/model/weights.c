/* weights.c -- see weights.h. */
#include "weights.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/torchbin.h"

const char *const WEIGHT_FILES[WEIGHT_FILES_N] = {"model.safetensors", "model.safetensors.index.json",
                                                  "pytorch_model.bin", "pytorch_model.bin.index.json"};

int weights_is_index(const char *name) { return path_has_suffix(name, ".index.json"); }

void weights_free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

gpt2c_status weights_index_shards(const char *index_path, char ***names, int *n, gpt2_err *e) {
    *names = NULL;
    *n = 0;
    json_t *root;
    gpt2c_status s = file_read_json(index_path, 64u << 20, &root, e);
    if (s) return s;
    json_t *map = json_object_get(root, "weight_map");
    char **out = NULL;
    if (!json_is_object(map) || json_object_size(map) == 0)
        s = err_set(e, GPT2C_ERR_FORMAT, "%s: field 'weight_map' must be a non-empty object", index_path);
    else if (!(out = calloc(json_object_size(map), sizeof *out)))
        s = err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (s) break;
        const char *f = json_string_value(v);
        if (!f || !*f || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
            s = err_set(e, GPT2C_ERR_FORMAT, "%s: weight_map['%.60s'] is not a file name in the folder", index_path, key);
            break;
        }
        int seen = 0;
        for (int i = 0; i < *n && !seen; i++) seen = strcmp(out[i], f) == 0;
        if (!seen && !(out[(*n)++] = strdup(f))) s = err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    }
    json_decref(root);
    if (s) {
        weights_free_names(out, *n);
        *n = 0;
        return s;
    }
    *names = out;
    return GPT2C_OK;
}

/* A safetensors file by its name, anything else as torch.save wrote it. */
static gpt2c_status open_one(const char *path, st_file *f, gpt2_err *e) {
    return path_has_suffix(path, ".safetensors") ? st_open(path, f, e) : tb_open(path, f, e);
}

gpt2c_status weights_open(const char *dir, st_file **files, int *n, char **where, gpt2_err *e) {
    *files = NULL;
    *n = 0;
    *where = NULL;
    for (int i = 0; i < WEIGHT_FILES_N && !*where; i++) {
        char *p = path_join(dir, WEIGHT_FILES[i]);
        if (!p) return err_set(e, GPT2C_ERR_NOMEM, "out of memory");
        if (file_exists(p)) *where = p;
        else free(p);
    }
    if (!*where)
        return err_set(e, GPT2C_ERR_IO, "%s: no weights (model.safetensors or pytorch_model.bin, or an index of their "
                       "shards)", dir);
    char **names = NULL;
    int count = 1;
    gpt2c_status s = GPT2C_OK;
    if (weights_is_index(*where) && (s = weights_index_shards(*where, &names, &count, e))) return s;
    if (!(*files = calloc((size_t)count, sizeof **files))) s = err_set(e, GPT2C_ERR_NOMEM, "out of memory");
    for (int i = 0; !s && i < count; i++) {
        char *p = names ? path_join(dir, names[i]) : strdup(*where);
        if (!p) s = err_set(e, GPT2C_ERR_NOMEM, "out of memory");
        else s = open_one(p, &(*files)[(*n)++], e);
        free(p);
    }
    weights_free_names(names, names ? count : 0);
    return s;
}

void weights_close(st_file *files, int n) {
    for (int i = 0; i < n; i++) st_close(&files[i]);
    free(files);
}
