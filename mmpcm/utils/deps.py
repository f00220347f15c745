"""Optional packages, imported when first needed: a missing one is one
error line that says what to install.

Image generation (diffusers, transformers) and the SynC refinement (faiss,
sentence-transformers) import their packages through
:func:`require_package`, never when their modules are imported.
"""
import importlib
from types import ModuleType
from typing import Optional

from mmpcm.utils.cli import InputError

__all__ = ['MissingPackageError', 'require_package']


class MissingPackageError(InputError, ImportError):
    """An optional package a step needs is not installed.

    ``str(error)`` is ``'<package>: not installed (<who> needs it); pip
    install <pip name>'``; tools print it as one ``error:`` line.
    """


def require_package(module: str, needed_for: str,
                    pip_name: Optional[str] = None) -> ModuleType:
    """Import a module of an optional package, or say how to install it.

    Args:
        module (str): The module to import (``'faiss'``,
            ``'diffusers.utils.torch_utils'``).
        needed_for (str): What needs it (``'image generation'``).
        pip_name (str, optional): What ``pip install`` takes
            (``'faiss-cpu'``). Defaults to the package's name.

    Returns:
        ModuleType: The imported module.

    Raises:
        MissingPackageError: If the package itself is not installed. A
            module missing inside an installed package (a dependency of
            it, an older version) raises the original ImportError.
    """
    package = module.split('.')[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != package:
            raise
        raise MissingPackageError(
            package, f'not installed ({needed_for} needs it)',
            f'pip install {pip_name or package}') from error
