"""_arrays.py -- what the package's calls take and give back: Python lists,
numpy arrays or torch tensors, whichever the caller uses. numpy and torch
are optional and imported only when such an array is met or asked for."""
import sys


def kind_of(x):
    """'pt' for a torch tensor, 'np' for a numpy array, else 'list'."""
    mod = type(x).__module__ or ""
    if mod.startswith("torch") and hasattr(x, "tolist"):
        return "pt"
    if mod.startswith("numpy") and hasattr(x, "tolist"):
        return "np"
    return "list"


def to_list(x):
    """Nested lists of Python numbers from a list, tuple, array or tensor."""
    if hasattr(x, "tolist") and kind_of(x) != "list":
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [to_list(v) for v in x]
    return x


def ids_1d(x, what="token ids"):
    """A flat list of ints (one sequence): from an int, a list, or a 1-D array (or (1, n))."""
    x = to_list(x)
    if isinstance(x, bool):
        raise TypeError(f"{what}: expected integers, got a bool")
    if isinstance(x, int):
        return [x]
    if isinstance(x, list) and len(x) == 1 and isinstance(x[0], list):
        x = x[0]
    if not isinstance(x, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        raise TypeError(f"{what}: expected a sequence of integers")
    return x


def ids_2d(x, what="input_ids"):
    """Rows of ints (a batch) from a 1-D or 2-D list, array or tensor."""
    x = to_list(x)
    if isinstance(x, list) and x and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return [x]
    if not isinstance(x, list) or not all(isinstance(r, list) and
                                          all(isinstance(v, int) and not isinstance(v, bool) for v in r) for r in x):
        raise TypeError(f"{what}: expected a batch of token id sequences (a 2-D list, array or tensor of integers)")
    return x


def mask_2d(x, what="attention_mask"):
    """An attention mask's rows as 0/1 ints: from ints, bools or floats (as transformers takes them)."""
    x = to_list(x)
    if isinstance(x, list) and x and not isinstance(x[0], list):
        x = [x]
    if not isinstance(x, list) or not all(isinstance(r, list) and all(isinstance(v, (int, float)) for v in r)
                                          for r in x):
        raise TypeError(f"{what}: expected a batch of 0/1 values (a 2-D list, array or tensor)")
    return [[1 if v else 0 for v in r] for r in x]


def tensor(rows, kind, dtype="int64"):
    """rows (nested lists) as kind: 'pt' (torch), 'np' (numpy) or 'list'."""
    if kind == "pt":
        try:
            import torch
        except ImportError:
            raise ImportError("return_tensors='pt' needs torch (Debian: python3-torch)") from None
        return torch.tensor(rows, dtype=getattr(torch, dtype))
    if kind == "np":
        import numpy as np
        return np.array(rows, dtype=dtype)
    if kind in ("list", None):
        return rows
    raise ValueError(f"return_tensors must be 'pt', 'np' or None (got {kind!r}); gpt2c has no TensorFlow or JAX")


def from_numpy(a, kind):
    """A float numpy array as kind ('pt' shares its memory)."""
    if kind == "pt":
        import torch
        return torch.from_numpy(a)
    return a


def torch_loaded():
    return sys.modules.get("torch") is not None
