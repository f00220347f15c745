"""The module a config's ``custom_imports`` names.

mmengine imports the modules of ``custom_imports`` when it loads a config
(``Config.fromfile``), so a config built by mmengine or mmpretrain directly,
without mmpcm's tools, still gets mmpcm's setup. This is the only mmpcm
module whose import has an effect: it calls
:func:`mmpcm.setup_env.register_all_modules` with ``init_default_scope=False``
(the config's ``default_scope`` decides). Everywhere else, call
``register_all_modules()`` explicitly.
"""
from mmpcm.setup_env import register_all_modules

register_all_modules(init_default_scope=False)
