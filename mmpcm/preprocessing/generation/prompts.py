"""Prompt lengths: the token count of each caption and the pipeline's cut.

The text encoder takes at most ``tokenizer.model_max_length`` tokens
(``docs/generation_format.md``, "Prompts").
"""
from typing import Any, List, NamedTuple, Optional

__all__ = ['PromptTokens', 'token_limit', 'prompt_tokens']


class PromptTokens(NamedTuple):
    """A caption's length for the pipeline's text encoder.

    Attributes:
        tokens (int, optional): Tokens, start and end included, before any
            cut; None when the pipeline has no tokenizer.
        truncated (bool): More than the encoder takes: the pipeline cuts it.
        used (str, optional): When truncated, the leading words that fit
            whole; else None.
    """
    tokens: Optional[int]
    truncated: bool = False
    used: Optional[str] = None


def token_limit(pipe: Any) -> Optional[int]:
    """``pipe.tokenizer.model_max_length`` (None without a sane one)."""
    limit = getattr(getattr(pipe, 'tokenizer', None), 'model_max_length',
                    None)
    # transformers' "no limit" is a huge int (VERY_LARGE_INTEGER)
    return limit if isinstance(limit, int) and 0 < limit < 1 << 20 else None


def prompt_tokens(pipe: Any, prompts: List[str]) -> List[PromptTokens]:
    """Token count of each prompt by the pipeline's own tokenizer, and the
    cut the pipeline makes at ``tokenizer.model_max_length``.

    Diffusers' text-to-image pipelines tokenize with ``truncation=True,
    max_length=tokenizer.model_max_length`` (77 for Stable Diffusion's
    CLIP, start and end tokens included) and warn on the log only.

    Args:
        pipe (DiffusionPipeline): The pipeline (its ``tokenizer``).
        prompts (list[str]): The captions.

    Returns:
        list[PromptTokens]: One per prompt; all ``tokens=None`` when the
        pipeline has no tokenizer with a length limit.
    """
    limit = token_limit(pipe)
    if limit is None:
        return [PromptTokens(None) for _ in prompts]
    tokenizer = pipe.tokenizer

    def count(texts: List[str]) -> List[int]:
        ids = tokenizer(texts, truncation=False, verbose=False).input_ids
        return [len(i) for i in ids]

    lengths = []
    for prompt, n in zip(prompts, count(list(prompts)), strict=True):
        if n <= limit:
            lengths.append(PromptTokens(n))
            continue
        # Most leading words that fit: each word's tokens add up (CLIP's
        # BPE never merges across whitespace), so the count grows with k.
        words = prompt.split()
        lo, hi = 0, len(words) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count([' '.join(words[:mid])])[0] <= limit:
                lo = mid
            else:
                hi = mid - 1
        lengths.append(PromptTokens(n, True, ' '.join(words[:lo])))
    return lengths
