"""Explicit setup: library fixes, mmpcm's registrations, the default scope.

Nothing in mmpcm changes other libraries or fills registries when it is
imported; :func:`register_all_modules` does both, as mmpretrain's function of
the same name does for mmpretrain.
"""
import datetime
import warnings


def register_all_modules(init_default_scope: bool = True) -> None:
    """Apply the library fixes and register mmpcm's parts in mmpretrain's
    registries.

    First :func:`mmpcm.utils.compat.apply_library_fixes` (before anything
    imports ``mmpretrain.models`` or ``mmpretrain.datasets``), then imports
    :mod:`mmpcm.datasets`, :mod:`mmpcm.engine`, :mod:`mmpcm.evaluation` and
    :mod:`mmpcm.models`, whose classes register themselves. Idempotent.

    Args:
        init_default_scope (bool): Whether to make ``'mmpretrain'`` the
            default scope, so that registries build from mmpretrain's
            registry node (mmpcm's parts are registered there). If another
            scope is current, a new ``'mmpretrain'`` scope is made current,
            with a warning. Defaults to True. Pass False where a config's
            ``default_scope`` decides (``custom_imports``).

    Raises:
        RuntimeError: If ``mmpretrain.models`` or ``mmpretrain.datasets`` was
            imported before the first call while installed versions need the
            mmpretrain multimodal fix.
    """
    from mmpcm.utils.compat import apply_library_fixes
    apply_library_fixes()

    import mmpcm.datasets  # noqa: F401
    import mmpcm.engine  # noqa: F401
    import mmpcm.evaluation  # noqa: F401
    import mmpcm.models  # noqa: F401

    if not init_default_scope:
        return

    from mmengine import DefaultScope
    current_scope = DefaultScope.get_current_instance()
    if current_scope is None:
        DefaultScope.get_instance('mmpretrain', scope_name='mmpretrain')
    elif current_scope.scope_name != 'mmpretrain':
        warnings.warn(
            f'The current default scope "{current_scope.scope_name}" is not '
            '"mmpretrain"; register_all_modules makes "mmpretrain" the '
            'default scope. Pass init_default_scope=False if that is not '
            'wanted.')
        # a new instance name: the name 'mmpretrain' may be taken
        new_instance_name = f'mmpretrain-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_instance_name, scope_name='mmpretrain')
