"""streamers.py -- TextStreamer and TextIteratorStreamer: generate(streamer=...)
hands them the prompt, then each new token; they turn the tokens into text
pieces as transformers' streamers do (a piece ends at a newline, a CJK
character, or the last space, so words are not cut), printed or queued."""
from queue import Queue

from . import _arrays

_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in _CJK)


class BaseStreamer:
    def put(self, value):
        raise NotImplementedError

    def end(self):
        raise NotImplementedError


class TextStreamer(BaseStreamer):
    """Prints the text as it is generated. skip_prompt leaves the prompt out;
    decode_kwargs (skip_special_tokens, ...) go to tokenizer.decode."""

    def __init__(self, tokenizer, skip_prompt=False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def put(self, value):
        rows = _arrays.to_list(value)
        if isinstance(rows, list) and rows and isinstance(rows[0], list):
            if len(rows) > 1:
                raise ValueError("TextStreamer only supports batch size 1")
            rows = rows[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(_arrays.ids_1d(rows))
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith("\n"):
            piece = text[self.print_len:]
            self.token_cache, self.print_len = [], 0
        elif text and _is_cjk(ord(text[-1])):
            piece = text[self.print_len:]
            self.print_len += len(piece)
        else:
            # Up to the last space: the word after it may still grow.
            piece = text[self.print_len:text.rfind(" ") + 1]
            self.print_len += len(piece)
        self.on_finalized_text(piece)

    def end(self):
        if self.token_cache:
            piece = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)[self.print_len:]
            self.token_cache, self.print_len = [], 0
        else:
            piece = ""
        self.next_tokens_are_prompt = True
        self.on_finalized_text(piece, stream_end=True)

    def on_finalized_text(self, text, stream_end=False):
        print(text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """Queues the text pieces for another thread: run generate() in a thread,
    iterate over the streamer in this one. timeout (seconds) bounds each wait
    (queue.Empty when it passes)."""

    def __init__(self, tokenizer, skip_prompt=False, timeout=None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text, stream_end=False):
        self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self):
        value = self.text_queue.get(timeout=self.timeout)
        if value is self.stop_signal:
            raise StopIteration()
        return value
