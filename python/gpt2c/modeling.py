"""modeling.py -- the model classes scripts use from transformers
(AutoModelForCausalLM, GPT2LMHeadModel and the other architectures'):
from_pretrained, generate() with transformers' argument names, defaults and
return shapes, and model(input_ids).logits.

Generation runs in libgpt2c (gpt2c_gen_*) one step per call, the GIL
released for each, so a streamer can be read from another thread. What is
here is transformers' bookkeeping: the generation config and its
overrides, padding and attention masks, output shapes and kinds."""
import contextlib
import copy
import ctypes
import json
import logging
import os
import threading
import warnings

from . import _arrays, _seed
from ._lib import (DEFAULTS_GENERATE, DONE, GenParams, HUB_MODEL, Handle, ModelInfo, ModelParams, P, c_float, c_int,
                   c_int32, c_void_p, check, int32_array, lib, pop_hub_args, resolve, text)

logger = logging.getLogger("gpt2c")


class ModelOutput(dict):
    """transformers' ModelOutput: a dict of the fields that are set, whose keys
    are also attributes, indexable by position as a tuple."""

    def __init__(self, **fields):
        super().__init__((k, v) for k, v in fields.items() if v is not None)
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __getitem__(self, k):
        if isinstance(k, (int, slice)):
            return tuple(self.values())[k]
        return super().__getitem__(k)

    def to_tuple(self):
        return tuple(self.values())


class CausalLMOutputWithCrossAttentions(ModelOutput):
    def __init__(self, loss=None, logits=None, past_key_values=None, hidden_states=None, attentions=None,
                 cross_attentions=None):
        super().__init__(loss=loss, logits=logits, past_key_values=past_key_values, hidden_states=hidden_states,
                         attentions=attentions, cross_attentions=cross_attentions)


class PastIds:
    """What model() returns as past_key_values: not keys and values but the
    ids run so far, which a later call given it runs again in front of its
    own input (the same logits as a cache, recomputed)."""

    def __init__(self, rows):
        self.rows = [list(r) for r in rows]

    def __len__(self):
        return len(self.rows)


class GreedySearchDecoderOnlyOutput(ModelOutput):
    def __init__(self, sequences=None, scores=None, attentions=None, hidden_states=None):
        super().__init__(sequences=sequences, scores=scores, attentions=attentions, hidden_states=hidden_states)


class SampleDecoderOnlyOutput(GreedySearchDecoderOnlyOutput):
    pass


class BeamSearchDecoderOnlyOutput(ModelOutput):
    def __init__(self, sequences=None, sequences_scores=None, scores=None, beam_indices=None, attentions=None,
                 hidden_states=None):
        super().__init__(sequences=sequences, sequences_scores=sequences_scores, scores=scores,
                         beam_indices=beam_indices, attentions=attentions, hidden_states=hidden_states)


class PretrainedConfig:
    """config.json as attributes (model.config.n_positions, ...), with
    transformers' PretrainedConfig defaults for what the file leaves out."""
    DEFAULTS = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None, "max_length": 20,
                "min_length": 0, "is_encoder_decoder": False, "use_return_dict": True, "return_dict": True,
                "output_hidden_states": False, "output_attentions": False, "use_cache": True,
                "task_specific_params": None, "prefix": None, "tie_word_embeddings": True}

    def __init__(self, d=None, **kwargs):
        for k, v in dict(d or {}, **kwargs).items():
            setattr(self, k, v)

    def __getattr__(self, name):
        if name in PretrainedConfig.DEFAULTS:
            return PretrainedConfig.DEFAULTS[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def to_dict(self):
        return dict(vars(self))

    def __repr__(self):
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)}"


# generate()'s settings that gpt2c runs, with transformers' defaults (4.30).
_GEN_FIELDS = {"max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
               "early_stopping": False, "max_time": None, "do_sample": False, "num_beams": 1, "use_cache": True,
               "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0, "repetition_penalty": 1.0,
               "length_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None, "suppress_tokens": None,
               "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
               "pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
               "output_attentions": False, "output_hidden_states": False}
# Those it does not run: an error when set to anything but their default.
_UNSUPPORTED = {"num_beam_groups": 1, "penalty_alpha": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                "diversity_penalty": 0.0, "encoder_repetition_penalty": 1.0, "force_words_ids": None,
                "renormalize_logits": False, "constraints": None, "forced_bos_token_id": None,
                "forced_eos_token_id": None, "remove_invalid_values": False,
                "exponential_decay_length_penalty": None, "begin_suppress_tokens": None,
                "forced_decoder_ids": None, "sequence_bias": None, "guidance_scale": None,
                "encoder_no_repeat_ngram_size": 0, "decoder_start_token_id": None}


class GenerationConfig:
    """transformers' GenerationConfig: generate()'s settings, defaulted by the
    checkpoint (generation_config.json) and overridden per call."""

    def __init__(self, **kwargs):
        for k, v in _GEN_FIELDS.items():
            setattr(self, k, kwargs.pop(k, v))
        for k, v in _UNSUPPORTED.items():
            setattr(self, k, kwargs.pop(k, v))
        for k, v in kwargs.items():  # kept, as transformers keeps unknown fields
            setattr(self, k, v)

    def update(self, **kwargs):
        """Sets the fields it has; returns the other arguments."""
        rest = {}
        for k, v in kwargs.items():
            if k in vars(self):  # every field of _GEN_FIELDS and _UNSUPPORTED is set in __init__
                setattr(self, k, v)
            else:
                rest[k] = v
        return rest

    def to_dict(self):
        return dict(vars(self))

    def __repr__(self):
        return f"GenerationConfig {json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)}"


def _dtype_name(torch_dtype, load_in_8bit):
    """torch_dtype (torch.float16, "float16", "auto", ...) as gpt2c's storage dtype."""
    if load_in_8bit:
        return "q8"
    if torch_dtype is None or torch_dtype == "auto":
        return None  # as stored: f16 and bf16 weights are multiplied in f32, as transformers' f32 upcast
    name = str(torch_dtype).replace("torch.", "")
    names = {"float32": "f32", "float": "f32", "float16": "f16", "half": "f16", "bfloat16": "bf16"}
    if name not in names:
        raise ValueError(f"torch_dtype {torch_dtype!r} is not one gpt2c stores weights in "
                         "(float32, float16, bfloat16, or load_in_8bit=True)")
    return names[name]


class _CModel(Handle):
    _free = staticmethod(lib.gpt2c_model_free)
    _errmsg = staticmethod(lib.gpt2c_model_errmsg)
    _what = "model"


class _CEngine(Handle):
    _free = staticmethod(lib.gpt2c_engine_free)
    _errmsg = staticmethod(lib.gpt2c_engine_errmsg)
    _what = "engine"


class _CGen(Handle):
    _free = staticmethod(lib.gpt2c_gen_free)
    _errmsg = staticmethod(lib.gpt2c_gen_errmsg)
    _what = "generation"


class PreTrainedModel:
    """A causal language model loaded by gpt2c, with transformers' interface."""
    main_input_name = "input_ids"

    def __init__(self, folder, name_or_path=None, torch_dtype=None, load_in_8bit=False, n_threads=0, compute=None,
                 _lora=None, _dtype=None, **kwargs):
        # compute="bf16" (gpt2c's own, no transformers name): the products in bf16 where the CPU has AVX512_BF16.
        dtype = _dtype or _dtype_name(torch_dtype, load_in_8bit)
        self._dtype, self._compute = dtype, compute
        params = ModelParams(dtype.encode() if dtype else None, None, os.fsencode(_lora) if _lora else None,
                             compute.encode() if compute else None)
        m = c_void_p()
        self._m = _CModel.made(lib.gpt2c_model_load_ex(os.fsencode(folder), ctypes.byref(params), ctypes.byref(m)), m)
        info = ModelInfo()
        lib.gpt2c_model_get_info(self._m.ptr, ctypes.byref(info))
        self._info = info
        # The info's strings live in the model: copied, so they outlive close().
        self._strings = {k: text(getattr(info, k)) for k in ("model_type", "weight_dtype", "kernels", "compute")}
        self.name_or_path = name_or_path if name_or_path is not None else folder
        self._folder = folder
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            self.config = PretrainedConfig(json.load(f))
        self.config.name_or_path = self.name_or_path
        for k, v in kwargs.items():  # from_pretrained(..., pad_token_id=...) sets the config, as in transformers
            if k.startswith("_") or k in ("low_cpu_mem_usage", "device_map", "trust_remote_code", "use_safetensors",
                                          "offload_folder", "attn_implementation"):
                continue
            setattr(self.config, k, v)
        self.n_threads = int(n_threads)
        self.generation_config = self._gen_config()
        for k in ("pad_token_id", "eos_token_id", "bos_token_id"):  # the config's ids reach generate()
            if k in kwargs:
                setattr(self.generation_config, k, kwargs[k])
        self._engine = None
        self._engine_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Loads a checkpoint folder or a hub name ("gpt2", "org/name"), through the HF cache."""
        folder = resolve(pretrained_model_name_or_path, HUB_MODEL, **pop_hub_args(kwargs))
        model = cls(folder, name_or_path=os.fspath(pretrained_model_name_or_path), **kwargs)
        arch = getattr(cls, "_arch", None)
        if arch and model.model_type != arch:
            logger.warning("You are using a model of type %s to instantiate a model of type %s. This is not "
                           "supported for all configurations of models and can yield errors.", model.model_type, arch)
        return model

    def merge_and_unload(self):
        """PEFT's: the model with its LoRA adapter merged. gpt2c merges at load, so it is this model."""
        return self

    def _gen_config(self):
        """generate()'s defaults for this checkpoint (transformers' own, then generation_config.json)."""
        p = GenParams()
        with self._m.hold() as m:
            lib.gpt2c_model_gen_defaults(m, DEFAULTS_GENERATE, ctypes.byref(p))
        info = self._info
        gc = GenerationConfig(max_length=p.max_length, do_sample=bool(p.do_sample), temperature=p.temperature,
                              top_k=p.top_k, top_p=p.top_p, typical_p=p.typical_p,
                              repetition_penalty=p.repetition_penalty, no_repeat_ngram_size=p.no_repeat_ngram_size,
                              num_beams=p.num_beams, length_penalty=p.length_penalty,
                              early_stopping=bool(p.early_stopping), num_return_sequences=p.num_return_sequences,
                              min_length=p.min_length, use_cache=bool(p.use_cache))
        if p.max_new_tokens >= 0:
            gc.max_new_tokens = p.max_new_tokens
        if p.min_new_tokens > 0:
            gc.min_new_tokens = p.min_new_tokens
        eos = p.eos_token_id if p.eos_token_id != -2 else info.eos_token_id
        gc.eos_token_id = eos if eos >= 0 else None
        gc.bos_token_id = info.bos_token_id if info.bos_token_id >= 0 else None
        gc.pad_token_id = info.pad_token_id if info.pad_token_id >= 0 else None
        return gc

    # ---------------------------------------------------------- properties

    @property
    def model_type(self):
        return self._strings["model_type"]

    @property
    def device(self):
        if _arrays.torch_loaded():
            import torch
            return torch.device("cpu")
        return "cpu"

    @property
    def dtype(self):
        return self._strings["weight_dtype"].lower()

    @property
    def compute(self):
        """The products' arithmetic: "f32", or "bf16" (from_pretrained(..., compute="bf16"))."""
        return self._strings["compute"]

    def close(self):
        """Frees the model now; later calls raise."""
        with self._engine_lock:
            if self._engine:
                self._engine.close()
                self._engine = None
        self._m.close()

    def eval(self):
        return self

    def train(self, mode=True):
        if mode:
            raise NotImplementedError("gpt2c's Python package runs models; it does not train them")
        return self

    def to(self, *args, **kwargs):
        """The CPU is the only device: to("cpu") returns the model; anything else is refused."""
        for a in list(args) + list(kwargs.values()):
            if str(a) not in ("cpu", "-1") and a not in (-1, None):
                raise ValueError(f"gpt2c runs on the CPU: cannot move the model to {a!r} "
                                 "(load with torch_dtype= to change the weights' dtype)")
        return self

    def cpu(self):
        return self

    def requires_grad_(self, requires_grad=True):
        return self

    def can_generate(self):
        return True

    def __repr__(self):
        i = self._info
        return (f"{type(self).__name__}({self.model_type}: {i.n_layer} layers, n_embd {i.n_embd}, {i.n_head} heads, "
                f"vocab {i.n_vocab}, context {i.n_ctx}, weights {self._strings['weight_dtype']}, "
                f"kernels {self._strings['kernels']})")

    # -------------------------------------------------------------- forward

    def __call__(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, past_key_values=None,
                 token_type_ids=None, position_ids=None, head_mask=None, inputs_embeds=None, use_cache=None,
                 output_attentions=None, output_hidden_states=None, **kwargs):
        """model(input_ids).logits: (batch, length, vocab) scores, and the
        mean next-token cross-entropy as .loss when labels are given."""
        import numpy as np
        if kwargs:
            raise TypeError(f"forward() got unexpected keyword arguments {sorted(kwargs)}")
        if token_type_ids is not None and any(v for r in _arrays.ids_2d(token_type_ids, "token_type_ids") for v in r):
            raise NotImplementedError("gpt2c's forward takes no token_type_ids (all zeros are accepted)")
        for name, v in (("position_ids", position_ids), ("head_mask", head_mask), ("inputs_embeds", inputs_embeds)):
            if v is not None:
                raise NotImplementedError(f"gpt2c's forward takes input_ids only, not {name}")
        if past_key_values is not None and not isinstance(past_key_values, PastIds):
            raise NotImplementedError("past_key_values: gpt2c takes back only the ones its own model() returned")
        if output_attentions or output_hidden_states:
            raise NotImplementedError("gpt2c does not return attentions or hidden states")
        if input_ids is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        kind = _arrays.kind_of(input_ids)
        flat = _arrays.to_list(input_ids)
        one_d = isinstance(flat, list) and (not flat or not isinstance(flat[0], list))
        rows = _arrays.ids_2d(input_ids)
        if len({len(r) for r in rows}) != 1 or not rows[0]:
            raise ValueError("input_ids must be a non-empty rectangular batch")
        n_past = 0
        if past_key_values is not None:
            if len(past_key_values.rows) != len(rows):
                raise ValueError("past_key_values holds another batch size than input_ids")
            n_past = len(past_key_values.rows[0])
            rows = [p + r for p, r in zip(past_key_values.rows, rows)]
        if attention_mask is not None and any(v != 1 for r in _arrays.mask_2d(attention_mask) for v in r):
            raise NotImplementedError("model(...) with padding in attention_mask: gpt2c scores each sequence "
                                      "alone; pass them one at a time without padding")
        V = self._info.n_vocab
        T = len(rows[0])  # past included
        logits = np.empty((len(rows), T, V), dtype=np.float32)
        with self._m.hold(), self._engine_lock:
            if self._engine is None:
                e = c_void_p()
                self._engine = _CEngine.made(lib.gpt2c_engine_new(self._m.ptr, 1, self.n_threads, ctypes.byref(e)), e)
            for b, r in enumerate(rows):
                bad = [i for i in r if not 0 <= i < V]
                if bad:
                    raise IndexError(f"token id {bad[0]} is outside the vocabulary of {V}")
                out = logits[b].ctypes.data_as(P(c_float))
                st = lib.gpt2c_engine_logits(self._engine.ptr, int32_array(r), T, out)
                check(st, lib.gpt2c_engine_errmsg, self._engine.ptr)
        loss = None
        if labels is not None:
            if n_past:
                raise NotImplementedError("labels with past_key_values: pass the whole sequence")
            lab = np.array(_arrays.ids_2d(labels, "labels"), dtype=np.int64)
            if lab.shape != (len(rows), T):
                raise ValueError(f"labels must have the shape of input_ids {(len(rows), T)} (got {lab.shape})")
            # Token t predicts label t + 1; -100 is ignored (CrossEntropyLoss, mean).
            x = logits[:, :-1, :].astype(np.float64)
            y = lab[:, 1:]
            keep = y != -100
            lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
            picked = np.take_along_axis(x, np.where(keep, y, 0)[..., None], -1)[..., 0]
            n = keep.sum()
            loss = np.float32(((lse - picked) * keep).sum() / n) if n else np.float32("nan")
            if kind == "pt":
                import torch
                loss = torch.tensor(loss)
        if n_past:
            logits = logits[:, n_past:]
        if one_d:
            logits = logits[0]
        # The cache a caller hands back (the classic loop feeding past_key_values):
        # the ids so far, which the next call runs again in front of its own.
        past = PastIds(rows) if use_cache is not False and self.config.use_cache else None
        out = CausalLMOutputWithCrossAttentions(loss=loss, logits=_arrays.from_numpy(logits, kind),
                                                past_key_values=past)
        return out if return_dict is not False else out.to_tuple()

    forward = __call__

    def compute_transition_scores(self, sequences, scores, beam_indices=None, normalize_logits=False):
        """Each generated token's score from generate(output_scores=True): (batch, new tokens);
        with normalize_logits, its log-probability under that step's processed scores."""
        import numpy as np
        if beam_indices is not None:
            raise NotImplementedError("compute_transition_scores: gpt2c keeps no per-step beam scores")
        kind = _arrays.kind_of(scores[0]) if scores else "np"
        steps = np.stack([np.asarray(_arrays.to_list(s) if kind == "list" else s, dtype=np.float32) for s in scores], 1)
        if normalize_logits:  # log_softmax over the vocabulary, in float64 as a guard against -inf rows
            x = steps.astype(np.float64)
            m = x.max(-1, keepdims=True)
            steps = (x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))).astype(np.float32)
        seq = np.array(_arrays.ids_2d(sequences), dtype=np.int64)[:, -steps.shape[1]:]
        out = np.take_along_axis(steps, seq[..., None], -1)[..., 0]
        return _arrays.from_numpy(out, kind if kind == "pt" else "np")

    # ------------------------------------------------------------- generate

    def generate(self, inputs=None, generation_config=None, logits_processor=None, stopping_criteria=None,
                 prefix_allowed_tokens_fn=None, synced_gpus=None, assistant_model=None, streamer=None, **kwargs):
        """transformers' generate(): greedy, sampling or beam search, with its
        argument names and defaults; returns the prompt and new tokens, in the
        kind of array given (torch, numpy or lists)."""
        if logits_processor or stopping_criteria or prefix_allowed_tokens_fn:
            raise NotImplementedError("custom logits processors, stopping criteria and prefix_allowed_tokens_fn are "
                                      "not available in gpt2c")
        if assistant_model is not None and not isinstance(assistant_model, PreTrainedModel):
            raise TypeError("assistant_model must be a gpt2c model (AutoModelForCausalLM.from_pretrained)")
        gc = copy.deepcopy(generation_config if generation_config is not None else self.generation_config)
        rest = gc.update(**kwargs)
        input_ids = inputs if inputs is not None else rest.pop("input_ids", None)
        attention_mask = rest.pop("attention_mask", None)
        if rest.get("position_ids") is None:
            rest.pop("position_ids", None)
        tt = rest.get("token_type_ids")
        if tt is None or not any(v for r in _arrays.ids_2d(tt, "token_type_ids") for v in r):
            rest.pop("token_type_ids", None)  # GPT-2 takes all-zero token types: they change nothing
        if rest:
            raise ValueError(f"The following `model_kwargs` are not used by the model: {sorted(rest)} (note: typos in "
                             "the generate arguments will also show up in this list)")
        for k, default in _UNSUPPORTED.items():
            v = getattr(gc, k, default)
            if v is not None and v != default:
                raise NotImplementedError(f"generate(): {k} is not available in gpt2c")
        if gc.output_attentions or gc.output_hidden_states:
            raise NotImplementedError("generate(): gpt2c does not return attentions or hidden states")
        if gc.max_time is not None:
            raise NotImplementedError("generate(): max_time is not available in gpt2c")
        if generation_config is None:
            # The config's ids, when the generation config has none (transformers
            # rebuilds the generation config from an edited model.config).
            for k in ("pad_token_id", "eos_token_id", "bos_token_id"):
                if getattr(gc, k) is None and getattr(self.config, k) is not None and k not in kwargs:
                    setattr(gc, k, getattr(self.config, k))
        run = None
        try:
            with self._m.hold(), (assistant_model._m.hold() if assistant_model else contextlib.nullcontext()) as d:
                run = _Generation(self, gc, input_ids, attention_mask, streamer)
                # Assisted generation: the assistant drafts tokens that this model
                # checks (greedy output unchanged, sampling the same distribution);
                # transformers keeps the draft length on the assistant (and grows
                # it without bound): the first step's, within gpt2c's 1..7.
                run.assistant = d, min(max(int(getattr(assistant_model, "max_assistant_tokens", 5)), 1), 7)
                return run.run()
        except BaseException:
            # An error ends the stream too, so that a reader in another thread is not left waiting.
            if streamer is not None and not (run and run.stream_ended):
                streamer.end()
            raise


def _one_id(v, name):
    """eos_token_id and the like: an int, or a list holding one."""
    if v is None:
        return None
    v = _arrays.to_list(v)
    if isinstance(v, list):
        if len(v) != 1:
            raise NotImplementedError(f"{name}: gpt2c takes one id (got {v})")
        v = v[0]
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an integer (got {type(v).__name__})")
    return v


class _Generation:
    """One generate() call: its prompts, parameters and run."""

    def __init__(self, model, gc, input_ids, attention_mask, streamer):
        self.model, self.gc, self.streamer = model, gc, streamer
        self.stream_ended = False
        self.assistant = None, 5  # the draft model's handle and first draft length
        info = model._info
        self.eos = _one_id(gc.eos_token_id, "eos_token_id")
        self.pad = _one_id(gc.pad_token_id, "pad_token_id")
        if self.pad is None and self.eos is not None:
            if attention_mask is None:
                logger.warning("The attention mask and the pad token id were not set. As a consequence, you may "
                               "observe unexpected behavior. Please pass your input's `attention_mask` to obtain "
                               "reliable results.")
            logger.warning("Setting `pad_token_id` to `eos_token_id`:%d for open-end generation.", self.eos)
            self.pad = self.eos
        if input_ids is None:
            bos = _one_id(gc.bos_token_id, "bos_token_id")
            if bos is None:
                bos = info.start_token_id if info.start_token_id >= 0 else None
            if bos is None:
                raise ValueError("`bos_token_id` has to be defined when no `input_ids` are provided.")
            self.kind = "pt" if _arrays.torch_loaded() else "list"
            self.rows = [[bos]]
        else:
            self.kind = _arrays.kind_of(input_ids)
            self.rows = _arrays.ids_2d(input_ids)
        if not self.rows or any(len(r) == 0 for r in self.rows):
            raise ValueError("generate(): input_ids is empty")
        if attention_mask is not None:
            masks = _arrays.mask_2d(attention_mask)
            if [len(m) for m in masks] != [len(r) for r in self.rows]:
                raise ValueError("attention_mask must have the shape of input_ids")
        elif self.pad is not None and self.pad != self.eos and any(self.pad in r for r in self.rows):
            masks = [[int(t != self.pad) for t in r] for r in self.rows]  # inferred, as transformers does
        else:
            masks = [[1] * len(r) for r in self.rows]
        # Each prompt runs without its padding (left or right): positions
        # then count from its first real token, as transformers' position_ids
        # from the attention mask make them.
        if any(m[-1] == 0 for m in masks):
            logger.warning("A decoder-only architecture is being used, but right-padding was detected! For correct "
                           "generation results, please set `padding_side='left'` when initializing the tokenizer. "
                           "(gpt2c continues each row from its last real token, and the new tokens follow the "
                           "padding in the output.)")
        self.prompts = []
        for b, (r, m) in enumerate(zip(self.rows, masks)):
            on = [j for j, v in enumerate(m) if v]
            if not on:
                raise ValueError(f"generate(): row {b} of attention_mask is all zeros")
            if on != list(range(on[0], on[-1] + 1)):
                raise NotImplementedError(f"generate(): row {b} of attention_mask has holes; gpt2c takes left or "
                                          "right padding")
            self.prompts.append(r[on[0]:on[-1] + 1])

    def params(self):
        gc, T = self.gc, max(len(r) for r in self.rows)
        p = GenParams()
        lib.gpt2c_gen_params_init(ctypes.byref(p))
        # Lengths count the padded input, as input_ids.shape[-1] does in transformers.
        if gc.max_new_tokens is not None:
            p.max_new_tokens = int(gc.max_new_tokens)
        else:
            if gc.max_length is None:
                raise ValueError("generate(): set max_length or max_new_tokens")
            p.max_new_tokens = max(0, int(gc.max_length) - T)
        p.min_length = 0
        p.min_new_tokens = max(int(gc.min_new_tokens or 0), int(gc.min_length or 0) - T, 0)
        p.do_sample = int(bool(gc.do_sample))
        p.temperature = float(gc.temperature if gc.temperature is not None else 1.0)
        p.top_k = int(gc.top_k or 0)
        p.top_p = float(gc.top_p if gc.top_p is not None else 1.0)
        p.typical_p = float(gc.typical_p if gc.typical_p is not None else 1.0)
        p.repetition_penalty = float(gc.repetition_penalty if gc.repetition_penalty is not None else 1.0)
        p.no_repeat_ngram_size = int(gc.no_repeat_ngram_size or 0)
        p.num_beams = int(gc.num_beams or 1)
        p.length_penalty = float(gc.length_penalty if gc.length_penalty is not None else 1.0)
        if gc.early_stopping == "never":
            raise NotImplementedError("generate(): early_stopping='never' is not available in gpt2c")
        p.early_stopping = int(bool(gc.early_stopping))
        p.num_return_sequences = int(gc.num_return_sequences or 1)
        p.use_cache = int(gc.use_cache is not False)
        p.n_threads = self.model.n_threads
        p.eos_token_id = self.eos if self.eos is not None else -1
        seed = _seed.next_seed() if p.do_sample else None  # greedy and beam search draw nothing
        if seed is not None:
            p.has_seed, p.seed = 1, seed
        keep = []
        if gc.suppress_tokens:
            sup = int32_array([int(t) for t in _arrays.to_list(gc.suppress_tokens)])
            keep.append(sup)
            p.suppress_tokens, p.n_suppress_tokens = ctypes.cast(sup, P(c_int32)), len(sup)
        if gc.bad_words_ids:
            words = [_arrays.ids_1d(w, "bad_words_ids") for w in _arrays.to_list(gc.bad_words_ids)]
            arrs = [int32_array(w) for w in words]
            ptrs = (P(c_int32) * len(arrs))(*[ctypes.cast(a, P(c_int32)) for a in arrs])
            lens = (c_int * len(arrs))(*[len(w) for w in words])
            keep += [arrs, ptrs, lens]
            p.bad_words_ids, p.bad_words_lens, p.n_bad_words = ptrs, lens, len(arrs)
        return p, keep

    def run(self):
        gc, streamer, model = self.gc, self.streamer, self.model
        p, keep = self.params()
        p.assistant_model, p.num_assistant_tokens = self.assistant
        if gc.output_scores:
            import numpy as np  # only scores need it: generation itself runs on lists
        n_prompts = len(self.prompts)
        if streamer is not None and (n_prompts > 1 or p.num_return_sequences > 1 or p.num_beams > 1):
            raise ValueError("a streamer takes one sequence: batch size 1, num_return_sequences 1, no beam search")
        arrays = [int32_array(pr) for pr in self.prompts]
        ptrs = (P(c_int32) * n_prompts)(*[ctypes.cast(a, P(c_int32)) for a in arrays])
        lens = (c_int * n_prompts)(*[len(pr) for pr in self.prompts])
        g = c_void_p()
        gen = _CGen.made(lib.gpt2c_gen_start(model._m.ptr, ctypes.byref(p), n_prompts, ptrs, lens, ctypes.byref(g)), g)
        try:
            n_seqs = lib.gpt2c_gen_n_seqs(gen.ptr)
            V = model._info.n_vocab
            want_scores = bool(gc.output_scores) and p.num_beams == 1
            if want_scores:
                check(lib.gpt2c_gen_keep_scores(gen.ptr), lib.gpt2c_gen_errmsg, gen.ptr)
            steps = []
            counts = [0] * n_seqs
            if streamer is not None:
                streamer.put(_arrays.tensor([self.rows[0]], self.kind))
            while True:
                st = lib.gpt2c_gen_step(gen.ptr)
                check(st, lib.gpt2c_gen_errmsg, gen.ptr)
                if p.num_beams == 1:
                    if want_scores:
                        row = np.full((n_seqs, V), -np.inf, dtype=np.float32)
                        row[:, self.pad if self.pad is not None else 0] = 0.0
                    grew = False
                    for i in range(n_seqs):
                        n = c_int()
                        toks = lib.gpt2c_gen_tokens(gen.ptr, i, ctypes.byref(n))
                        if n.value > counts[i]:
                            grew = True
                            if want_scores:
                                sc = lib.gpt2c_gen_scores(gen.ptr, i)
                                row[i] = np.ctypeslib.as_array(sc, (V,))
                            if streamer is not None and i == 0:
                                streamer.put(_arrays.tensor([toks[counts[i]]], self.kind))
                            counts[i] = n.value
                    if want_scores and grew:
                        steps.append(row)
                if st == DONE:
                    break
            if streamer is not None:
                self.stream_ended = True
                streamer.end()
            outs = []
            for i in range(n_seqs):
                n = c_int()
                toks = lib.gpt2c_gen_tokens(gen.ptr, i, ctypes.byref(n))
                outs.append(self.rows[i // p.num_return_sequences] + toks[:n.value])
            width = max(len(o) for o in outs)
            pad = self.pad if self.pad is not None else 0
            outs = [o + [pad] * (width - len(o)) for o in outs]
            seq_scores = [lib.gpt2c_gen_score(gen.ptr, i) for i in range(n_seqs)] if p.num_beams > 1 else None
        finally:
            gen.close()
            del keep
        sequences = _arrays.tensor(outs, self.kind)
        if not gc.return_dict_in_generate:
            return sequences
        fl = "pt" if self.kind == "pt" else "np"
        scores = tuple(_arrays.from_numpy(s, fl) for s in steps) if want_scores else None
        if p.num_beams > 1:
            if gc.output_scores:  # transformers gives both; gpt2c only the final ones
                warnings.warn("gpt2c keeps no per-step scores in beam search: only sequences_scores are returned")
            ss = _arrays.from_numpy(np.array(seq_scores, dtype=np.float32), fl) if gc.output_scores else None
            return BeamSearchDecoderOnlyOutput(sequences=sequences, sequences_scores=ss)
        cls = SampleDecoderOnlyOutput if p.do_sample else GreedySearchDecoderOnlyOutput
        return cls(sequences=sequences, scores=scores)


def _model_class(name, model_type=None):
    return type(name, (PreTrainedModel,), {"_arch": model_type, "__doc__": PreTrainedModel.__doc__})


GPT2LMHeadModel = _model_class("GPT2LMHeadModel", "gpt2")
GPTNeoForCausalLM = _model_class("GPTNeoForCausalLM", "gpt_neo")
OPTForCausalLM = _model_class("OPTForCausalLM", "opt")
GPTNeoXForCausalLM = _model_class("GPTNeoXForCausalLM", "gpt_neox")
BloomForCausalLM = _model_class("BloomForCausalLM", "bloom")
GPTBigCodeForCausalLM = _model_class("GPTBigCodeForCausalLM", "gpt_bigcode")
CodeGenForCausalLM = _model_class("CodeGenForCausalLM", "codegen")


class AutoModelForCausalLM:
    """Loads whichever architecture config.json's model_type names."""

    def __init__(self):
        raise EnvironmentError("AutoModelForCausalLM is designed to be instantiated using "
                               "`AutoModelForCausalLM.from_pretrained(pretrained_model_name_or_path)`.")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        model = PreTrainedModel.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        for c in (GPT2LMHeadModel, GPTNeoForCausalLM, OPTForCausalLM, GPTNeoXForCausalLM, BloomForCausalLM,
                  GPTBigCodeForCausalLM, CodeGenForCausalLM):
            if c._arch == model.model_type:
                model.__class__ = c
        return model


AutoModelWithLMHead = AutoModelForCausalLM


class PeftModel:
    """peft.PeftModel's loading: PeftModel.from_pretrained(model, adapter_dir) gives the model with the
    LoRA adapter (adapter_config.json + adapter_model.safetensors, as PEFT and `gpt2c finetune
    --lora-rank` write them) merged into its weights at load, so it generates at the base model's
    speed; merge_and_unload() returns it as it is."""

    @classmethod
    def from_pretrained(cls, model, model_id, **kwargs):
        if not isinstance(model, PreTrainedModel):
            raise TypeError("PeftModel.from_pretrained takes a model loaded by gpt2c, not %s" % type(model).__name__)
        return type(model)(model._folder, name_or_path=model.name_or_path, n_threads=model.n_threads,
                           _lora=os.fspath(model_id), _dtype=model._dtype, compute=model._compute)
