"""Load a pickle-free release file into the model before a run."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmpcm.registry import HOOKS


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class PCMLoadReleaseHook(Hook):
    """Load a release's weights into the model before the run.

    mmengine's ``load_from`` reads pickled checkpoints; a release is a
    safetensors file, so it is loaded here instead (strictly).

    Args:
        release (str): The release file.
    """
    priority = 'VERY_HIGH'

    def __init__(self, release: str) -> None:
        self.release = release

    def before_run(self, runner: Runner) -> None:
        model = _unwrap(runner.model)
        from mmpcm.utils.release_file import load_release
        state = load_release(self.release).state_dict
        device = next(model.parameters()).device
        model.load_state_dict({k: v.to(device) for k, v in state.items()},
                              strict=True)
        runner.logger.info(f'Loaded release {self.release}')
