"""Refuse, in one line, a checkpoint that does not fit the config's model."""
from collections.abc import Mapping

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmpcm.models.utils.errors import check_state_dict_fits
from mmpcm.registry import HOOKS


@HOOKS.register_module()
class PCMCheckpointFitHook(Hook):
    """Check ``load_from`` / resume checkpoints against the model.

    mmengine loads a Runner's checkpoint non-strictly: tensors whose shape
    or name disagree are skipped with a warning that lists every key, and
    the run goes on with a partly random model. This hook, called by
    ``Runner.load_checkpoint`` after the file is read and before the
    weights are copied (``after_load_checkpoint``), raises
    :class:`~mmpcm.models.utils.errors.ConfigMismatchError` instead: one
    line naming the checkpoint and the config, with a summary, e.g.
    ``epoch_12.pth: does not fit configs/pcm/x.py: 12 tensors differ in
    shape (first: head.word_embed.weight [1000, 512] in the checkpoint vs
    [1200, 512] in the model); pass the config the checkpoint was trained
    with``. A different word vocabulary or concept table is left to the
    head's and the neck's own, more specific, checks.

    :func:`mmpcm.apis.prepare_cfg` adds it to every run's ``custom_hooks``.
    """
    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        """Raise if the checkpoint's state dict does not fit the model.

        Args:
            runner (Runner): The runner loading the checkpoint.
            checkpoint (dict): What was read from the file.
        """
        from mmpcm.engine.checkpoint_errors import (checkpoint_in_use,
                                                    config_name)
        state = checkpoint.get('state_dict', checkpoint)
        if not isinstance(state, Mapping):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        check_state_dict_fits(model, state,
                              checkpoint_in_use(runner) or 'the checkpoint',
                              config_name(runner.cfg))
