"""Optional packages of image generation, imported when first needed.

diffusers and transformers are imported by the functions that build or
describe a pipeline, never when :mod:`mmpcm.preprocessing.generation` is
imported; :func:`require` turns a missing one into one error line.
"""
import importlib
from types import ModuleType

from mmpcm.utils.cli import InputError

__all__ = ['MissingPackageError', 'require']


class MissingPackageError(InputError, ImportError):
    """A package image generation needs is not installed.

    ``str(error)`` is ``'<package>: not installed (image generation needs
    it); pip install <package>'``; tools print it as one ``error:`` line.
    """


def require(module: str) -> ModuleType:
    """Import a module of an optional package.

    Args:
        module (str): ``'diffusers'``, ``'transformers'`` or one of their
            submodules (``'diffusers.utils.torch_utils'``).

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
            package, 'not installed (image generation needs it)',
            f'pip install {package}') from error
