"""Optional packages of image generation, imported when first needed.

diffusers and transformers are imported by the functions that build or
describe a pipeline, never when :mod:`mmpcm.preprocessing.generation` is
imported; :func:`require` turns a missing one into one error line.
"""
from types import ModuleType

from mmpcm.utils.deps import MissingPackageError, require_package

__all__ = ['MissingPackageError', 'require']


def require(module: str) -> ModuleType:
    """Import a module of an optional package of image generation.

    Args:
        module (str): ``'diffusers'``, ``'transformers'`` or one of their
            submodules (``'diffusers.utils.torch_utils'``).

    Returns:
        ModuleType: The imported module.

    Raises:
        MissingPackageError: If the package itself is not installed
            (:func:`mmpcm.utils.deps.require_package`).
    """
    return require_package(module, 'image generation')
