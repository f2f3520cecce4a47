"""tokenization.py -- the tokenizer classes scripts use from transformers
(GPT2Tokenizer, GPT2TokenizerFast, AutoTokenizer and the other families'),
over gpt2c's tokenizer: __call__ with padding, truncation and tensors,
encode, decode, the special tokens and their ids.

The C library does the tokenizing itself (exactly as transformers does); what
is here is transformers' bookkeeping around it: special tokens named in
tokenizer_config.json / special_tokens_map.json, padding, truncation and the
shapes of what comes back."""
import ctypes
import json
import os

from . import _arrays
from ._lib import (DECODE_NO_CLEANUP, DECODE_SKIP_SPECIAL, DECODE_SKIP_UNKNOWN, HUB_TOKENIZER, Handle, c_int,
                   c_size_t, c_void_p, check, int32_array, lib, pop_hub_args, resolve, take_string, P, c_int32)

VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length when a tokenizer names none
LARGE_INTEGER = int(1e20)  # above it, a model_max_length means "no maximum"
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# The special tokens each tokenizer class assumes when its files name none.
_GPT2_DEFAULTS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
_CLASS_DEFAULTS = {
    "GPT2Tokenizer": _GPT2_DEFAULTS, "GPT2TokenizerFast": _GPT2_DEFAULTS,
    "CodeGenTokenizer": _GPT2_DEFAULTS, "CodeGenTokenizerFast": _GPT2_DEFAULTS,
    "GPTNeoXTokenizerFast": _GPT2_DEFAULTS,
    "BloomTokenizerFast": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
}
# config.json's model_type -> the class AutoTokenizer picks (its fast one).
AUTO_TOKENIZERS = {"gpt2": "GPT2TokenizerFast", "gpt_neo": "GPT2TokenizerFast", "opt": "GPT2TokenizerFast",
                   "gpt_neox": "GPTNeoXTokenizerFast", "bloom": "BloomTokenizerFast",
                   "gpt_bigcode": "GPT2TokenizerFast", "codegen": "CodeGenTokenizerFast"}

PAD_ERROR = ("Asking to pad but the tokenizer does not have a padding token. Please select a token to use as "
             "`pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
             "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`.")


def _read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            v = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return v if isinstance(v, dict) else {}


def _token_text(v):
    """A special token's text: a string or an AddedToken's content."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


class BatchEncoding(dict):
    """What a tokenizer call returns: a dict (input_ids, attention_mask) whose
    keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device):
        """Tensors are on the CPU, where gpt2c runs: returned as they are."""
        return self

    @property
    def data(self):
        return dict(self)


class _CTokenizer(Handle):
    _free = staticmethod(lib.gpt2c_tokenizer_free)
    _errmsg = staticmethod(lib.gpt2c_tokenizer_errmsg)
    _what = "tokenizer"


class PreTrainedTokenizer:
    """A byte-level BPE tokenizer (GPT-2's files, or tokenizer.json) with
    transformers' interface."""
    padding_side = "right"
    truncation_side = "right"
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, folder, name_or_path=None, **kwargs):
        t = c_void_p()
        self._t = _CTokenizer.made(lib.gpt2c_tokenizer_load(os.fsencode(folder), ctypes.byref(t)), t)
        self.name_or_path = name_or_path if name_or_path is not None else folder
        self._folder = folder
        config = _read_json(folder, "tokenizer_config.json")
        specials = dict(_CLASS_DEFAULTS.get(type(self).__name__, _GPT2_DEFAULTS))
        for src in (config, _read_json(folder, "special_tokens_map.json")):
            for k in SPECIAL_KEYS:
                if k in src:
                    specials[k] = _token_text(src[k])
        for k in SPECIAL_KEYS:
            if k in kwargs:
                specials[k] = _token_text(kwargs.pop(k))
        self._special = {}
        for k in SPECIAL_KEYS:
            setattr(self, k, specials.get(k))
        self.model_max_length = int(kwargs.pop("model_max_length", config.get("model_max_length", VERY_LARGE_INTEGER)))
        self.padding_side = kwargs.pop("padding_side", config.get("padding_side", type(self).padding_side))
        self.truncation_side = kwargs.pop("truncation_side", config.get("truncation_side", type(self).truncation_side))
        self.clean_up_tokenization_spaces = bool(kwargs.pop("clean_up_tokenization_spaces",
                                                             config.get("clean_up_tokenization_spaces", True)))
        # The C tokenizer prepends the bos token itself when the config asks
        # (OPT) and the vocabulary has it; add_bos_token (which from_pretrained
        # may override) and add_special_tokens=False are applied on top.
        bos = self.bos_token
        self._c_adds_bos = bool(config.get("add_bos_token", False)) and bos is not None and \
            lib.gpt2c_token_id(self._t.ptr, bos.encode("utf-8", "surrogatepass")) >= 0
        self.add_bos_token = bool(kwargs.pop("add_bos_token", config.get("add_bos_token", False)))
        self.add_prefix_space = bool(kwargs.pop("add_prefix_space", config.get("add_prefix_space", False)))
        self.init_kwargs = kwargs
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right' (got {self.padding_side!r})")

    # ------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *inputs, use_fast=True, **kwargs):
        """Loads from a folder or a hub name ("gpt2", "org/name"), through the HF cache."""
        folder = resolve(pretrained_model_name_or_path, HUB_TOKENIZER, **pop_hub_args(kwargs))
        return cls(folder, name_or_path=os.fspath(pretrained_model_name_or_path), **kwargs)

    def close(self):
        """Frees the tokenizer now; later calls raise."""
        self._t.close()

    def __repr__(self):
        return (f"{type(self).__name__}(name_or_path='{self.name_or_path}', vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side='{self.padding_side}', "
                f"special_tokens={self.special_tokens_map})")

    # ------------------------------------------------------ special tokens

    def __setattr__(self, name, value):
        # Setting a special token (tokenizer.pad_token = tokenizer.eos_token)
        # keeps its text; its id is looked up when asked for.
        if name in SPECIAL_KEYS:
            value = _token_text(value) if value is not None else None
        object.__setattr__(self, name, value)

    def _special_id(self, key):
        text = getattr(self, key)
        return None if text is None else self.convert_tokens_to_ids(text)

    def _set_special_id(self, key, value):
        # tokenizer.pad_token_id = tokenizer.eos_token_id: the token of that id.
        setattr(self, key, None if value is None else self.convert_ids_to_tokens(int(value)))

    @staticmethod
    def _id_property(key):
        return property(lambda self: self._special_id(key), lambda self, v: self._set_special_id(key, v))

    bos_token_id = _id_property.__func__("bos_token")
    eos_token_id = _id_property.__func__("eos_token")
    unk_token_id = _id_property.__func__("unk_token")
    sep_token_id = _id_property.__func__("sep_token")
    pad_token_id = _id_property.__func__("pad_token")
    cls_token_id = _id_property.__func__("cls_token")
    mask_token_id = _id_property.__func__("mask_token")

    @property
    def special_tokens_map(self):
        return {k: getattr(self, k) for k in SPECIAL_KEYS if getattr(self, k) is not None}

    @property
    def all_special_tokens(self):
        out = []
        for v in self.special_tokens_map.values():
            if v not in out:
                out.append(v)
        return out

    @property
    def all_special_ids(self):
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def add_special_tokens(self, special_tokens_dict, replace_additional_special_tokens=True):
        """Names special tokens. The vocabulary is fixed: a token it lacks is refused."""
        for k, v in special_tokens_dict.items():
            if k not in SPECIAL_KEYS:
                raise NotImplementedError(f"add_special_tokens: {k!r}: gpt2c's vocabularies are fixed")
            text = _token_text(v)
            with self._t.hold() as t:
                known = text is not None and lib.gpt2c_token_id(t, text.encode("utf-8", "surrogatepass")) >= 0
            if not known:
                raise NotImplementedError(f"add_special_tokens: {text!r} is not in the vocabulary, and gpt2c "
                                          "cannot add tokens (use one it has: tokenizer.pad_token = tokenizer.eos_token)")
            setattr(self, k, text)
        return 0

    # -------------------------------------------------------------- sizes

    @property
    def vocab_size(self):
        with self._t.hold() as t:
            return lib.gpt2c_tokenizer_vocab_size(t)

    def __len__(self):
        return self.vocab_size

    def get_vocab(self):
        return {self.convert_ids_to_tokens(i): i for i in range(self.vocab_size)
                if self.convert_ids_to_tokens(i) is not None}

    # ----------------------------------------------------------- encoding

    def _encode_one(self, text, add_special_tokens=True, add_prefix_space=None):
        if not isinstance(text, str):
            raise TypeError(f"text input must be a str or a list of str (got {type(text).__name__})")
        if add_prefix_space if add_prefix_space is not None else self.add_prefix_space:
            text = " " + text  # as GPT2Tokenizer's prepare_for_tokenization does
        data = text.encode("utf-8", "surrogatepass")
        ids = P(c_int32)()
        n = c_int()
        with self._t.hold() as t:
            st = lib.gpt2c_tokenize(t, data, len(data), ctypes.byref(ids), ctypes.byref(n))
            try:
                check(st, lib.gpt2c_tokenizer_errmsg, t)
                out = ids[:n.value]
            finally:
                lib.gpt2c_free(ids)
        want_bos = add_special_tokens and self.add_bos_token
        if self._c_adds_bos and not want_bos:
            out = out[1:]
        elif want_bos and not self._c_adds_bos and self.bos_token_id is not None:
            out = [self.bos_token_id] + out
        return out

    def tokenize(self, text, add_prefix_space=None, **kwargs):
        """The tokens of text, as vocab.json spells them."""
        return self.convert_ids_to_tokens(self._encode_one(text, False, add_prefix_space))

    def _lengths(self, padding, truncation, max_length, pad_to_multiple_of):
        """transformers' reading of the padding and truncation arguments."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # a max_length alone truncates
        if padding is True:
            padding = "longest"
        elif padding is False or padding is None:
            padding = "do_not_pad"
        elif padding not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad' (got {padding!r})")
        if truncation is True:
            truncation = "longest_first"
        elif truncation in (False, None):
            truncation = "do_not_truncate"
        elif truncation not in ("longest_first", "only_first", "only_second", "do_not_truncate"):
            raise ValueError(f"truncation must be True, False or a strategy name (got {truncation!r})")
        if max_length is None and (padding == "max_length" or truncation != "do_not_truncate"):
            if self.model_max_length > LARGE_INTEGER:  # no maximum: neither pad nor truncate to one
                if padding == "max_length":
                    padding = "do_not_pad"
                truncation = "do_not_truncate"
            else:
                max_length = self.model_max_length
        if padding != "do_not_pad" and (self.pad_token_id is None or self.pad_token_id < 0):
            raise ValueError(PAD_ERROR)
        if padding == "max_length" and truncation != "do_not_truncate" and pad_to_multiple_of and \
                max_length % pad_to_multiple_of:
            raise ValueError(f"Truncation and padding are both activated but truncation length ({max_length}) is not "
                             f"a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return padding, truncation, max_length

    def _pad_rows(self, rows, masks, padding, max_length, pad_to_multiple_of):
        """Pads rows (and their masks) in place, on padding_side, to the longest or to max_length."""
        if padding == "do_not_pad" or not rows:
            return
        target = max(len(r) for r in rows) if padding == "longest" else max_length
        if pad_to_multiple_of and target % pad_to_multiple_of:
            target += pad_to_multiple_of - target % pad_to_multiple_of
        pad = self.pad_token_id
        for i, r in enumerate(rows):
            k = target - len(r)
            if k > 0 and self.padding_side == "left":
                rows[i], masks[i] = [pad] * k + r, [0] * k + masks[i]
            elif k > 0:
                rows[i], masks[i] = r + [pad] * k, masks[i] + [0] * k

    def __call__(self, text=None, text_pair=None, text_target=None, add_special_tokens=True, padding=False,
                 truncation=None, max_length=None, stride=0, is_split_into_words=False, pad_to_multiple_of=None,
                 return_tensors=None, return_token_type_ids=None, return_attention_mask=None,
                 return_overflowing_tokens=False, return_special_tokens_mask=False, return_offsets_mapping=False,
                 return_length=False, verbose=True, add_prefix_space=None, **kwargs):
        if text is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        if text_pair is not None or text_target is not None or is_split_into_words or return_offsets_mapping or \
                return_overflowing_tokens:
            raise NotImplementedError("gpt2c's tokenizers take plain text (no text pairs, pre-split words, "
                                      "offsets or overflowing tokens)")
        batched = isinstance(text, (list, tuple))
        texts = list(text) if batched else [text]
        padding, truncation, max_length = self._lengths(padding, truncation, max_length, pad_to_multiple_of)
        rows = [self._encode_one(t, add_special_tokens, add_prefix_space) for t in texts]
        if truncation != "do_not_truncate":
            rows = [r[:max_length] if self.truncation_side == "right" else r[max(0, len(r) - max_length):]
                    for r in rows]
        masks = [[1] * len(r) for r in rows]
        self._pad_rows(rows, masks, padding, max_length, pad_to_multiple_of)
        if return_tensors is not None and len({len(r) for r in rows}) > 1:
            raise ValueError("Unable to create tensor, you should probably activate truncation and/or padding with "
                             "'padding=True' 'truncation=True' to have batched tensors with the same length.")
        out = BatchEncoding()
        # With return_tensors every field is 2-D (a batch of one for one text).
        wrap = (lambda v: _arrays.tensor(v, return_tensors)) if return_tensors is not None else \
            (lambda v: v if batched else v[0])
        out["input_ids"] = wrap(rows)
        if return_token_type_ids:
            out["token_type_ids"] = wrap([[0] * len(r) for r in rows])
        if return_attention_mask or (return_attention_mask is None and "attention_mask" in self.model_input_names):
            out["attention_mask"] = wrap(masks)
        if return_special_tokens_mask:
            specials = set(self.all_special_ids)
            out["special_tokens_mask"] = wrap([[int(i in specials) for i in r] for r in rows])
        if return_length:
            out["length"] = wrap([len(r) for r in rows]) if batched else len(rows[0])
        return out

    def encode(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None, max_length=None,
               stride=0, return_tensors=None, **kwargs):
        """The ids of one text (a list, or a (1, n) tensor with return_tensors)."""
        enc = self(text, text_pair=text_pair, add_special_tokens=add_special_tokens, padding=padding,
                   truncation=truncation, max_length=max_length, stride=stride, return_tensors=return_tensors,
                   return_attention_mask=False, **kwargs)
        return enc["input_ids"]

    def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
        return self(list(batch_text_or_text_pairs), **kwargs)

    def encode_plus(self, text, **kwargs):
        return self(text, **kwargs)

    def pad(self, encoded_inputs, padding=True, max_length=None, pad_to_multiple_of=None,
            return_attention_mask=None, return_tensors=None, verbose=True):
        """Pads the input_ids (and attention_mask) of a BatchEncoding or a list of them."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
            encoded_inputs = {k: [e[k] for e in encoded_inputs] for k in encoded_inputs[0]}
        ids = encoded_inputs["input_ids"]
        rows = _arrays.to_list(ids)
        batched = bool(rows) and isinstance(rows[0], list)
        rows = rows if batched else [rows]
        masks = _arrays.to_list(encoded_inputs.get("attention_mask")) or None
        masks = (masks if batched else [masks]) if masks else [[1] * len(r) for r in rows]
        padding, _, max_length = self._lengths(padding, False, max_length, pad_to_multiple_of)
        self._pad_rows(rows, masks, padding, max_length, pad_to_multiple_of)
        out = BatchEncoding()
        conv = (lambda v: _arrays.tensor(v, return_tensors)) if return_tensors else (lambda v: v if batched else v[0])
        out["input_ids"] = conv(rows)
        if return_attention_mask is not False:
            out["attention_mask"] = conv(masks)
        return out

    # ----------------------------------------------------------- decoding

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        """The text of token ids (an int, a list, a 1-D array or tensor)."""
        ids = _arrays.ids_1d(token_ids)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        flags = DECODE_SKIP_UNKNOWN | (DECODE_SKIP_SPECIAL if skip_special_tokens else 0) | \
            (0 if clean_up_tokenization_spaces else DECODE_NO_CLEANUP)
        out, n = c_void_p(), c_size_t()
        bad = [i for i in ids if not 0 <= i < 2 ** 31]  # (-100, the ignored label, among them)
        if bad:
            raise ValueError(f"decode: token id {bad[0]} is outside the vocabulary")
        with self._t.hold() as t:
            st = lib.gpt2c_detokenize(t, int32_array(ids), len(ids), flags, ctypes.byref(out), ctypes.byref(n))
            check(st, lib.gpt2c_tokenizer_errmsg, t)
        return take_string(out.value, n.value).decode("utf-8")

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        return [self.decode(s, skip_special_tokens=skip_special_tokens,
                            clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
                for s in _arrays.to_list(sequences)]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """One id's token text (vocab.json's spelling), or a list's; None for an unknown id."""
        single = isinstance(_arrays.to_list(ids), int)
        out = []
        specials = set(self.all_special_ids) if skip_special_tokens and not single else ()
        with self._t.hold() as t:
            for i in _arrays.ids_1d(ids):
                if i in specials:
                    continue
                s = take_string(lib.gpt2c_token_string(t, i) if -2 ** 31 <= i < 2 ** 31 else None)
                out.append(s.decode("utf-8") if s is not None else None)
        return out[0] if single else out

    def convert_tokens_to_ids(self, tokens):
        """A token's id (the unk token's when it has none), or a list's."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            with self._t.hold() as t:
                i = lib.gpt2c_token_id(t, tokens.encode("utf-8", "surrogatepass"))
                if i < 0 and self.unk_token is not None:
                    i = lib.gpt2c_token_id(t, self.unk_token.encode("utf-8", "surrogatepass"))
            return i if i >= 0 else None
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_tokens_to_string(self, tokens):
        ids = [self.convert_tokens_to_ids(t) for t in tokens]
        return self.decode([i for i in ids if i is not None], clean_up_tokenization_spaces=False)


class GPT2Tokenizer(PreTrainedTokenizer):
    pass


class GPT2TokenizerFast(PreTrainedTokenizer):
    pass


class CodeGenTokenizer(PreTrainedTokenizer):
    pass


class CodeGenTokenizerFast(PreTrainedTokenizer):
    pass


class GPTNeoXTokenizerFast(PreTrainedTokenizer):
    pass


class BloomTokenizerFast(PreTrainedTokenizer):
    padding_side = "left"


_CLASSES = {c.__name__: c for c in (GPT2Tokenizer, GPT2TokenizerFast, CodeGenTokenizer, CodeGenTokenizerFast,
                                    GPTNeoXTokenizerFast, BloomTokenizerFast)}


class AutoTokenizer:
    """Picks the tokenizer class as transformers does: tokenizer_config.json's
    tokenizer_class, else the one of config.json's model_type."""

    def __init__(self):
        raise EnvironmentError("AutoTokenizer is designed to be instantiated using "
                               "`AutoTokenizer.from_pretrained(pretrained_model_name_or_path)`.")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *inputs, use_fast=True, **kwargs):
        folder = resolve(pretrained_model_name_or_path, HUB_TOKENIZER, **pop_hub_args(kwargs))
        name = _read_json(folder, "tokenizer_config.json").get("tokenizer_class")
        if name not in _CLASSES:
            mt = _read_json(folder, "config.json").get("model_type")
            name = AUTO_TOKENIZERS.get(mt, "GPT2TokenizerFast")
        if not use_fast and name.endswith("Fast") and name[:-4] in _CLASSES:
            name = name[:-4]
        return _CLASSES[name](folder, name_or_path=os.fspath(pretrained_model_name_or_path), **kwargs)
