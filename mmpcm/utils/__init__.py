"""Utilities shared by mmpcm's packages and tools.

Importing this package is light (no torch, mmengine or mmpretrain);
submodules such as :mod:`mmpcm.utils.checkpoint` and :mod:`mmpcm.utils.dist`
import those where they need them. Setup (library fixes and registration) is
:func:`mmpcm.setup_env.register_all_modules`.
"""
from .compat import apply_library_fixes

__all__ = ['apply_library_fixes']
