"""_seed.py -- set_seed(): the seed of gpt2c's sampler for the calls that
follow, as transformers' set_seed seeds torch's global generator.

The first generation after set_seed(n) draws exactly as `gpt2c generate
--seed n` does with the same settings; each later call takes the next seed
of a fixed sequence, so repeated calls differ (as with torch's generator)
and the whole script repeats run to run. A script that seeds only torch
(torch.manual_seed) repeats too: its seeds are drawn from torch's generator."""
import random
import sys
import threading

_lock = threading.Lock()
_state = {"seed": None}
MASK = (1 << 64) - 1


def set_seed(seed):
    """Seeds gpt2c's sampler, and Python's `random`, numpy and torch when loaded."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"set_seed takes an integer (got {type(seed).__name__})")
    random.seed(seed)
    numpy, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if numpy is not None:
        numpy.random.seed(seed & 0xFFFFFFFF)
    if torch is not None:
        torch.manual_seed(seed)
    with _lock:
        _state["seed"] = seed & MASK


def next_seed():
    """The seed for the next generation. Without set_seed, a script that seeds
    torch (torch.manual_seed) gets one drawn from torch's generator, so it
    repeats run to run as it did on transformers; otherwise None (fresh
    randomness)."""
    with _lock:
        s = _state["seed"]
        if s is None:
            torch = sys.modules.get("torch")
            if torch is not None and hasattr(torch, "randint"):
                return int(torch.randint(0, 2 ** 62, (1,)).item())
            return None
        # splitmix64's step: the next seed of the sequence.
        z = (s + 0x9E3779B97F4A7C15) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        _state["seed"] = z ^ (z >> 31)
        return s
