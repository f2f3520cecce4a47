"""_lib.py -- the ctypes binding of libgpt2c.so: finding the library, the C
declarations of include/gpt2c.h that the package uses, and C statuses turned
into Python exceptions.

ctypes (the standard library) rather than cffi: the package then needs no
compiler or build step to install, and ctypes releases the GIL around every
foreign call, so the engine runs while other Python threads go on.
"""
import contextlib
import ctypes
import ctypes.util
import glob
import os
import threading

# --------------------------------------------------------------------- errors

# gpt2c_status values (include/gpt2c.h).
OK, ERR_IO, ERR_FORMAT, ERR_UNSUPPORTED, ERR_INVALID, ERR_NOMEM, ERR_CONTEXT, DONE, ERR_NOT_FOUND, \
    ERR_PERMISSION, ERR_NETWORK, ERR_BUSY = range(12)


class GPT2CError(Exception):
    """An error reported by libgpt2c; `status` is its gpt2c_status code."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


# Each status is also the built-in exception a Python caller would catch for
# it (transformers raises OSError for a model that cannot be found, say).
class GPT2CFileError(GPT2CError, OSError): pass
class GPT2CNotFoundError(GPT2CError, FileNotFoundError): pass
class GPT2CPermissionError(GPT2CError, PermissionError): pass
class GPT2CNetworkError(GPT2CError, ConnectionError): pass
class GPT2CValueError(GPT2CError, ValueError): pass
class GPT2CUnsupportedError(GPT2CError, NotImplementedError): pass
class GPT2CMemoryError(GPT2CError, MemoryError): pass
class GPT2CBusyError(GPT2CError, RuntimeError): pass


_CLASSES = {ERR_IO: GPT2CFileError, ERR_FORMAT: GPT2CValueError, ERR_UNSUPPORTED: GPT2CUnsupportedError,
            ERR_INVALID: GPT2CValueError, ERR_NOMEM: GPT2CMemoryError, ERR_CONTEXT: GPT2CValueError,
            ERR_NOT_FOUND: GPT2CNotFoundError, ERR_PERMISSION: GPT2CPermissionError,
            ERR_NETWORK: GPT2CNetworkError, ERR_BUSY: GPT2CBusyError}


def error(status, message):
    """The exception for a failed call: its class says the kind, its text is gpt2c's message."""
    return _CLASSES.get(status, GPT2CError)(message, status)


# -------------------------------------------------------------- the library

HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """Where libgpt2c.so may be, in the order tried."""
    env = os.environ.get("GPT2C_LIBRARY")
    if env:
        yield env
        return
    # Installed by setup.py next to this file.
    yield from sorted(glob.glob(os.path.join(HERE, "libgpt2c.so*")))
    # Run from the source tree (python/gpt2c/): the build folder of `make`.
    repo = os.path.dirname(os.path.dirname(HERE))
    if os.path.exists(os.path.join(repo, "include", "gpt2c.h")):
        yield os.path.join(repo, "build", "libgpt2c.so")
    # Installed system-wide (`make install`, a package).
    yield "libgpt2c.so.0"
    found = ctypes.util.find_library("gpt2c")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError("gpt2c: cannot load libgpt2c.so; build it with `make` or set GPT2C_LIBRARY to its path. Tried: " +
                      "; ".join(tried))


lib = _load()

c_int, c_int32, c_uint, c_float, c_double, c_char_p, c_void_p, c_size_t, c_uint64 = (
    ctypes.c_int, ctypes.c_int32, ctypes.c_uint, ctypes.c_float, ctypes.c_double, ctypes.c_char_p,
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64)
P = ctypes.POINTER


class GenParams(ctypes.Structure):
    """gpt2c_gen_params, field for field."""
    _fields_ = [("max_new_tokens", c_int), ("max_length", c_int), ("min_length", c_int), ("min_new_tokens", c_int),
                ("do_sample", c_int), ("temperature", c_float), ("top_k", c_int), ("top_p", c_float),
                ("typical_p", c_float), ("repetition_penalty", c_float), ("no_repeat_ngram_size", c_int),
                ("num_beams", c_int), ("length_penalty", c_float), ("early_stopping", c_int),
                ("num_return_sequences", c_int), ("has_seed", c_int), ("seed", c_uint64), ("eos_token_id", c_int),
                ("use_cache", c_int), ("n_threads", c_int), ("n_logprobs", c_int),
                ("suppress_tokens", P(c_int32)), ("n_suppress_tokens", c_int),
                ("bad_words_ids", P(P(c_int32))), ("bad_words_lens", P(c_int)), ("n_bad_words", c_int),
                ("logit_bias_ids", P(c_int32)), ("logit_bias", P(c_float)), ("n_logit_bias", c_int),
                ("presence_penalty", c_float), ("frequency_penalty", c_float),
                ("assistant_model", c_void_p), ("num_assistant_tokens", c_int)]


class ModelParams(ctypes.Structure):
    _fields_ = [("dtype", c_char_p), ("kv_cache", c_char_p), ("lora", c_char_p), ("compute", c_char_p)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("n_vocab", c_int), ("n_ctx", c_int), ("n_embd", c_int), ("n_head", c_int), ("n_layer", c_int),
                ("n_inner", c_int), ("bos_token_id", c_int), ("eos_token_id", c_int), ("pad_token_id", c_int),
                ("weight_dtype", c_char_p), ("kernels", c_char_p), ("weight_bytes", c_uint64),
                ("kv_cache_dtype", c_char_p), ("model_type", c_char_p), ("kv_bytes_per_token", c_uint64),
                ("start_token_id", c_int), ("compute", c_char_p)]


DECODE_SKIP_SPECIAL, DECODE_NO_CLEANUP, DECODE_SKIP_UNKNOWN = 1, 2, 4
HUB_TOKENIZER, HUB_MODEL = 1, 2
DEFAULTS_GENERATE = 0
FINISH_NONE, FINISH_LENGTH, FINISH_EOS, FINISH_STOP = range(4)

_DECLS = {
    # name: (restype, argtypes)
    "gpt2c_version": (c_char_p, []),
    "gpt2c_status_string": (c_char_p, [c_int]),
    "gpt2c_free": (None, [c_void_p]),
    "gpt2c_default_threads": (c_int, []),
    "gpt2c_tokenizer_load": (c_int, [c_char_p, P(c_void_p)]),
    "gpt2c_tokenizer_errmsg": (c_char_p, [c_void_p]),
    "gpt2c_tokenizer_free": (None, [c_void_p]),
    "gpt2c_tokenizer_vocab_size": (c_int, [c_void_p]),
    "gpt2c_tokenizer_eos_id": (c_int, [c_void_p]),
    "gpt2c_tokenize": (c_int, [c_void_p, c_char_p, c_size_t, P(P(c_int32)), P(c_int)]),
    "gpt2c_detokenize": (c_int, [c_void_p, P(c_int32), c_int, c_uint, P(c_void_p), P(c_size_t)]),
    "gpt2c_token_string": (c_void_p, [c_void_p, c_int32]),
    "gpt2c_token_id": (c_int32, [c_void_p, c_char_p]),
    "gpt2c_model_load_ex": (c_int, [c_char_p, P(ModelParams), P(c_void_p)]),
    "gpt2c_model_errmsg": (c_char_p, [c_void_p]),
    "gpt2c_model_free": (None, [c_void_p]),
    "gpt2c_model_get_info": (None, [c_void_p, P(ModelInfo)]),
    "gpt2c_model_gen_defaults": (None, [c_void_p, c_int, P(GenParams)]),
    "gpt2c_gen_params_init": (None, [P(GenParams)]),
    "gpt2c_gen_start": (c_int, [c_void_p, P(GenParams), c_int, P(P(c_int32)), P(c_int), P(c_void_p)]),
    "gpt2c_gen_errmsg": (c_char_p, [c_void_p]),
    "gpt2c_gen_step": (c_int, [c_void_p]),
    "gpt2c_gen_status": (c_int, [c_void_p]),
    "gpt2c_gen_n_seqs": (c_int, [c_void_p]),
    "gpt2c_gen_tokens": (P(c_int32), [c_void_p, c_int, P(c_int)]),
    "gpt2c_gen_finish_reason": (c_int, [c_void_p, c_int]),
    "gpt2c_gen_score": (c_double, [c_void_p, c_int]),
    "gpt2c_gen_keep_scores": (c_int, [c_void_p]),
    "gpt2c_gen_scores": (P(c_float), [c_void_p, c_int]),
    "gpt2c_gen_free": (None, [c_void_p]),
    "gpt2c_engine_new": (c_int, [c_void_p, c_int, c_int, P(c_void_p)]),
    "gpt2c_engine_errmsg": (c_char_p, [c_void_p]),
    "gpt2c_engine_free": (None, [c_void_p]),
    "gpt2c_engine_logits": (c_int, [c_void_p, P(c_int32), c_int, P(c_float)]),
    "gpt2c_hub_new": (c_int, [P(c_void_p)]),
    "gpt2c_hub_errmsg": (c_char_p, [c_void_p]),
    "gpt2c_hub_free": (None, [c_void_p]),
    "gpt2c_hub_resolve": (c_int, [c_void_p, c_char_p, c_uint, P(c_void_p)]),
}
for _name, (_res, _args) in _DECLS.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        raise ImportError(f"gpt2c: {lib._name} has no {_name}: it is older than this package; rebuild it "
                          "(make) or point GPT2C_LIBRARY at a current one") from None
    _f.restype, _f.argtypes = _res, _args

version = lib.gpt2c_version().decode()


def text(ptr):
    """A C string from the library (UTF-8) as str; '' for NULL."""
    return ptr.decode("utf-8", "replace") if ptr else ""


def check(status, errmsg, handle):
    """Raises the exception for status (a gpt2c_status) with the handle's message."""
    if status not in (OK, DONE):
        msg = text(errmsg(handle))
        if not msg or msg == "no error":  # a call that sets no message of its own
            msg = text(lib.gpt2c_status_string(status))
        raise error(status, msg)


def int32_array(ids):
    """A C array of int32 holding ids (a list of ints)."""
    return (c_int32 * len(ids))(*ids)


def take_string(ptr, n=None):
    """Copies a malloc'd C string into Python and frees it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr, n) if n is not None else ctypes.string_at(ptr)
    finally:
        lib.gpt2c_free(ptr)


class Handle:
    """An owned C handle: freed once, by close() or when collected; using it
    after that raises instead of crashing. A close() while calls hold it
    (another thread's generate(), or a streamer's callback inside one) frees
    it when the last of them ends."""
    _free = None
    _errmsg = None
    _what = "object"

    def __init__(self, ptr):
        self._ptr = ptr
        self._lock = threading.Lock()
        self._users = 0
        self._pending = None

    @classmethod
    def made(cls, status, out):
        """The handle a C constructor put in `out` (a c_void_p); when it
        failed, the error with the handle's message, the handle freed."""
        h = cls(out.value)
        if status:
            msg = text(cls._errmsg(out))
            h.close()
            raise error(status, msg)
        return h

    @property
    def ptr(self):
        p = self._ptr
        if not p:
            raise ValueError(f"gpt2c: this {self._what} has been closed")
        return p

    @contextlib.contextmanager
    def hold(self):
        """The pointer, kept alive until the block ends."""
        with self._lock:
            p = self.ptr
            self._users += 1
        try:
            yield p
        finally:
            with self._lock:
                self._users -= 1
                last = self._users == 0 and self._ptr is None and self._pending
                if last:
                    self._pending = None
            if last:
                type(self)._free(p)

    def close(self):
        with self._lock:
            p, self._ptr = self._ptr, None
            if p and self._users:
                self._pending, p = p, None  # the last hold frees it
        if p:
            type(self)._free(p)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


_env_lock = threading.Lock()


class Hub(Handle):
    _free = staticmethod(lib.gpt2c_hub_free)
    _errmsg = staticmethod(lib.gpt2c_hub_errmsg)
    _what = "hub client"

    @classmethod
    def new(cls, cache_dir=None, offline=False, token=None):
        env = {}
        if cache_dir:
            env["HF_HUB_CACHE"] = os.fspath(cache_dir)
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        if token:
            env["HF_TOKEN"] = token
        # The hub client reads its settings from the environment when made:
        # these are set around that, one hub at a time.
        with _env_lock:
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                h = c_void_p()
                st = lib.gpt2c_hub_new(ctypes.byref(h))
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return cls.made(st, h)

    def resolve(self, spec, what):
        out = c_void_p()
        st = lib.gpt2c_hub_resolve(self.ptr, spec.encode(), what, ctypes.byref(out))
        check(st, lib.gpt2c_hub_errmsg, self.ptr)
        return take_string(out.value).decode()


# from_pretrained's arguments about where the files come from; those gpt2c has no use for
# (downloads resume and are verified anyway, there is no remote code) are accepted and ignored.
HUB_ARGS = ("revision", "cache_dir", "local_files_only", "token", "use_auth_token", "subfolder", "force_download",
            "resume_download", "proxies", "trust_remote_code", "mirror", "_commit_hash")


def pop_hub_args(kwargs):
    return {k: kwargs.pop(k) for k in HUB_ARGS if k in kwargs}


def resolve(name_or_path, what, revision=None, cache_dir=None, local_files_only=False, token=None,
            use_auth_token=None, subfolder="", **ignored):
    """A folder for a hub name or a folder, as from_pretrained takes them."""
    path = os.fspath(name_or_path)
    if not isinstance(path, str):
        raise TypeError(f"a model name or folder must be a string or a path, not {type(name_or_path).__name__}")
    if not (os.path.isdir(path) or os.path.isfile(path)):
        spec = path + (f"@{revision}" if revision and "@" not in path else "")
        token = token if isinstance(token, str) else use_auth_token if isinstance(use_auth_token, str) else None
        hub = Hub.new(cache_dir, local_files_only, token)
        try:
            path = hub.resolve(spec, what)
        finally:
            hub.close()
    return os.path.join(path, subfolder) if subfolder else path
