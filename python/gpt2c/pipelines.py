"""pipelines.py -- pipeline("text-generation"): transformers'
TextGenerationPipeline over gpt2c's model and tokenizer, with its defaults
(the checkpoint's task_specific_params: gpt2 samples, max_length 50), its
arguments and its output shapes."""
import copy
import enum
import warnings

from .modeling import AutoModelForCausalLM, PreTrainedModel
from .tokenization import AutoTokenizer, PreTrainedTokenizer

DEFAULT_MODEL = "gpt2"  # transformers' default for "text-generation"


class ReturnType(enum.Enum):
    TENSORS = 0
    NEW_TEXT = 1
    FULL_TEXT = 2


# Arguments of a pipeline call about batching, which gpt2c does not need: accepted, unused.
_BATCHING = ("batch_size", "num_workers")


class Pipeline:
    task = None

    def __init__(self, model, tokenizer, **kwargs):
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.device
        self.framework = "pt"
        # Arguments given at creation are every call's defaults; a call's own win.
        self._defaults = {k: v for k, v in kwargs.items() if k not in _BATCHING and k != "torch_dtype"}


class TextGenerationPipeline(Pipeline):
    """Continues text prompts: a string gives a list of {"generated_text": ...},
    a list of strings a list of such lists."""
    task = "text-generation"

    def _generation_config(self):
        """The model's generation config with config.json's
        task_specific_params["text-generation"] on top (gpt2: sampling,
        max_length 50), as transformers' pipeline sets them."""
        gc = copy.deepcopy(self.model.generation_config)
        params = (self.model.config.task_specific_params or {}).get(self.task) or {}
        gc.update(**params)
        return gc

    def _sanitize(self, return_full_text=None, return_tensors=None, return_text=None, return_type=None,
                  clean_up_tokenization_spaces=None, prefix=None, handle_long_generation=None, stop_sequence=None,
                  **generate_kwargs):
        pre, post = {}, {}
        for k in _BATCHING:
            generate_kwargs.pop(k, None)
        if prefix:
            pre["prefix"] = prefix
            generate_kwargs["prefix_length"] = len(self.tokenizer(prefix, padding=False,
                                                                  add_special_tokens=False)["input_ids"])
        if handle_long_generation is not None:
            if handle_long_generation != "hole":
                raise ValueError(f"{handle_long_generation} is not a valid value for `handle_long_generation` "
                                 "parameter expected [None, 'hole']")
            pre["handle_long_generation"] = handle_long_generation
        if return_full_text is not None and return_type is None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_full_text`")
            if return_tensors is not None:
                raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.FULL_TEXT if return_full_text else ReturnType.NEW_TEXT
        if return_tensors is not None and return_type is None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.TENSORS
        if return_type is not None:
            post["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if stop_sequence is not None:
            # transformers 4.30: the stop sequence's first token becomes the EOS.
            ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            if len(ids) > 1:
                warnings.warn("Stopping on a multiple token sequence is not yet supported on transformers. The first "
                              "token of the stop sequence will be used as the stop sequence string in the interim.")
            generate_kwargs["eos_token_id"] = ids[0]
        return pre, generate_kwargs, post

    def __call__(self, text_inputs, **kwargs):
        pre, gen_kwargs, post = self._sanitize(**dict(self._defaults, **kwargs))
        if isinstance(text_inputs, str):
            return self._one(text_inputs, pre, dict(gen_kwargs), post)
        if isinstance(text_inputs, (list, tuple)):
            return [self._one(t, pre, dict(gen_kwargs), post) for t in text_inputs]
        raise TypeError(f"text-generation takes a string or a list of strings (got {type(text_inputs).__name__})")

    def _one(self, prompt_text, pre, gen_kwargs, post):
        if not isinstance(prompt_text, str):
            raise TypeError(f"text-generation takes strings (got {type(prompt_text).__name__})")
        prefix = pre.get("prefix", "")
        ids = self.tokenizer(prefix + prompt_text, padding=False, add_special_tokens=False)["input_ids"]
        gc = self._generation_config()
        if pre.get("handle_long_generation") == "hole":
            new = gen_kwargs.get("max_new_tokens")
            if new is None:
                new = gen_kwargs.get("max_length", gc.max_length) - len(ids)
                if new < 0:
                    raise ValueError("We cannot infer how many new tokens are expected")
            if len(ids) + new > self.tokenizer.model_max_length:
                keep = self.tokenizer.model_max_length - new
                if keep <= 0:
                    raise ValueError("We cannot use `hole` to handle this generation the number of desired tokens "
                                     "exceeds the models max length")
                ids = ids[-keep:]
        prefix_length = gen_kwargs.pop("prefix_length", 0)
        if prefix_length > 0:
            if "max_new_tokens" not in gen_kwargs and (gen_kwargs.get("generation_config") is None or
                                                       gen_kwargs["generation_config"].max_new_tokens is None):
                gen_kwargs["max_length"] = (gen_kwargs.get("max_length") or gc.max_length) + prefix_length
            if "min_new_tokens" not in gen_kwargs and "min_length" in gen_kwargs:
                gen_kwargs["min_length"] += prefix_length
        config = gen_kwargs.pop("generation_config", gc)
        if ids:
            seqs = self.model.generate(input_ids=[ids], attention_mask=[[1] * len(ids)], generation_config=config,
                                       **gen_kwargs)
        else:
            seqs = self.model.generate(generation_config=config, **gen_kwargs)
        return_type = post.get("return_type", ReturnType.FULL_TEXT)
        clean = post.get("clean_up_tokenization_spaces", True)
        records = []
        prompt_length = len(self.tokenizer.decode(ids, skip_special_tokens=True,
                                                  clean_up_tokenization_spaces=clean)) if ids else 0
        for seq in seqs:
            seq = list(seq)
            if return_type == ReturnType.TENSORS:
                records.append({"generated_token_ids": seq})
                continue
            text = self.tokenizer.decode(seq, skip_special_tokens=True, clean_up_tokenization_spaces=clean)
            new = text[prompt_length:]
            records.append({"generated_text": prompt_text + new if return_type == ReturnType.FULL_TEXT else new})
        return records


def pipeline(task=None, model=None, config=None, tokenizer=None, feature_extractor=None, image_processor=None,
             framework=None, revision=None, use_fast=True, use_auth_token=None, token=None, device=None,
             device_map=None, torch_dtype=None, trust_remote_code=None, model_kwargs=None, pipeline_class=None,
             **kwargs):
    """pipeline("text-generation", model=name_or_folder_or_model, tokenizer=..., torch_dtype=...)."""
    if task is None and model is None:
        raise RuntimeError("Impossible to instantiate a pipeline without either a task or a model being specified.")
    task = task or "text-generation"
    if task != "text-generation":
        raise NotImplementedError(f"gpt2c's pipeline runs the 'text-generation' task only (got {task!r})")
    if framework not in (None, "pt"):
        raise ValueError(f"gpt2c's pipeline has no {framework!r} framework")
    if device not in (None, -1, "cpu") and str(device) != "cpu":
        raise ValueError(f"gpt2c runs on the CPU: device must be -1 or 'cpu' (got {device!r})")
    if isinstance(model, PreTrainedModel):
        m = model
    else:
        name = model if model is not None else DEFAULT_MODEL
        mk = dict(model_kwargs or {})
        if torch_dtype is not None:
            mk["torch_dtype"] = torch_dtype
        m = AutoModelForCausalLM.from_pretrained(name, revision=revision, token=token or use_auth_token, **mk)
    if isinstance(tokenizer, PreTrainedTokenizer):
        t = tokenizer
    else:
        if isinstance(tokenizer, tuple):
            tokenizer, tk = tokenizer
        else:
            tk = {}
        src = tokenizer if tokenizer is not None else m._folder
        t = AutoTokenizer.from_pretrained(src, revision=revision if tokenizer is not None else None,
                                          use_fast=use_fast, **tk)
    cls = pipeline_class or TextGenerationPipeline
    return cls(model=m, tokenizer=t, **kwargs)
