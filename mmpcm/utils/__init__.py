"""Utilities shared by mmpcm's packages and tools.

Importing this package is light (no torch, mmengine or mmpretrain);
submodules such as :mod:`mmpcm.utils.checkpoint` and :mod:`mmpcm.utils.dist`
import those where they need them.
"""
from .compat import apply_library_fixes
from .setup_env import register_all_modules

__all__ = ['apply_library_fixes', 'register_all_modules']
