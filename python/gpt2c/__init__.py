"""gpt2c -- the subset of Hugging Face transformers that GPT-2-era scripts use,
running on libgpt2c: change the import line and the script runs as before.

    from gpt2c import pipeline, set_seed        # was: from transformers import ...
    generator = pipeline('text-generation', model='gpt2')
    set_seed(42)
    generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)

The library is found next to this package, in the source tree's build/
folder, through GPT2C_LIBRARY, or installed system-wide (libgpt2c.so.0).
"""
from ._lib import (GPT2CError, GPT2CBusyError, GPT2CFileError, GPT2CMemoryError, GPT2CNetworkError,
                   GPT2CNotFoundError, GPT2CPermissionError, GPT2CUnsupportedError, GPT2CValueError)
from ._lib import version as __version__
from ._seed import set_seed
from .modeling import (AutoModelForCausalLM, AutoModelWithLMHead, BloomForCausalLM, CodeGenForCausalLM,
                       GenerationConfig, GPT2LMHeadModel, GPTBigCodeForCausalLM, GPTNeoForCausalLM,
                       GPTNeoXForCausalLM, OPTForCausalLM, PeftModel, PretrainedConfig, PreTrainedModel)
from .pipelines import Pipeline, TextGenerationPipeline, pipeline
from .streamers import TextIteratorStreamer, TextStreamer
from .tokenization import (AutoTokenizer, BatchEncoding, BloomTokenizerFast, CodeGenTokenizer, CodeGenTokenizerFast,
                           GPT2Tokenizer, GPT2TokenizerFast, GPTNeoXTokenizerFast, PreTrainedTokenizer)

PreTrainedTokenizerFast = PreTrainedTokenizer

__all__ = ["PeftModel", "pipeline", "set_seed", "Pipeline", "TextGenerationPipeline", "AutoTokenizer", "GPT2Tokenizer",
           "GPT2TokenizerFast", "CodeGenTokenizer", "CodeGenTokenizerFast", "GPTNeoXTokenizerFast",
           "BloomTokenizerFast", "PreTrainedTokenizer", "PreTrainedTokenizerFast", "BatchEncoding",
           "AutoModelForCausalLM", "AutoModelWithLMHead", "GPT2LMHeadModel", "GPTNeoForCausalLM", "OPTForCausalLM",
           "GPTNeoXForCausalLM", "BloomForCausalLM", "GPTBigCodeForCausalLM", "CodeGenForCausalLM",
           "PreTrainedModel", "PretrainedConfig", "GenerationConfig", "TextStreamer", "TextIteratorStreamer",
           "GPT2CError", "GPT2CBusyError", "GPT2CFileError", "GPT2CMemoryError", "GPT2CNetworkError",
           "GPT2CNotFoundError", "GPT2CPermissionError", "GPT2CUnsupportedError", "GPT2CValueError"]
