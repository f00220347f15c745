"""mmpcm: PCM-Net zero-shot image captioning as an mmpretrain plugin.

Importing mmpcm changes nothing: call
:func:`mmpcm.setup_env.register_all_modules`
to apply the library fixes and register mmpcm's parts in mmpretrain's
registries, or list ``mmpcm.plugin`` in a config's ``custom_imports``.
"""
from .version import __version__

__all__ = ['__version__']
