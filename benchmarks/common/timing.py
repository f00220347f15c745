"""Wall-clock timing of repeated sections, and in-place compilation."""
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are complete."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall-clock time of repeated sections.

    Args:
        device (torch.device, optional): Synchronised before each reading
            when it is a GPU. Defaults to None (no synchronisation).
    """

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = device
        self.seconds = 0.0
        self.calls = 0
        self.enabled = True

    def reset(self) -> None:
        """Forget the time and calls counted so far."""
        self.seconds, self.calls = 0.0, 0

    @contextmanager
    def section(self) -> Iterator[None]:
        """Time the body (when enabled)."""
        if not self.enabled:
            yield
            return
        if self.device is not None:
            synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device is not None:
                synchronize(self.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1


def wrap_timed(obj: object, name: str, watch: Stopwatch) -> Callable:
    """Time every call of ``obj.name`` with ``watch``.

    On an instance the wrapper is an instance attribute (``del
    obj.name`` restores the class's method); on a class it replaces the
    class attribute (the caller restores it).

    Returns:
        Callable: The original attribute, to restore it.
    """
    original = getattr(obj, name)

    def timed(*args, **kwargs):
        with watch.section():
            return original(*args, **kwargs)

    setattr(obj, name, timed)
    return original


def compile_modules(model: torch.nn.Module, names: Sequence[str],
                    **options) -> None:
    """``torch.compile`` the ``forward`` of the named submodules in place.

    The compiled function becomes the instance's ``forward``, so parameter
    names (and checkpoints) stay as they are, and
    :func:`uncompile_modules` restores the eager method.

    Args:
        model (nn.Module): The captioner.
        names (Sequence[str]): Dotted submodule names, e.g. ``'encoder'``.
        **options: ``torch.compile`` options.
    """
    for name in names:
        module = model.get_submodule(name)
        module.forward = torch.compile(module.forward, **options)


def uncompile_modules(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Undo :func:`compile_modules` (the class's ``forward`` again)."""
    for name in names:
        vars(model.get_submodule(name)).pop('forward', None)
