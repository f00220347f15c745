"""The Noam learning-rate schedule (Vaswani et al., 2017) for mmengine.

As the release's X-modaler ``NoamLR``: an absolute learning rate, the
optimizer's ``lr`` ignored. Write ``by_epoch=False`` in configs; why:
``docs/method.md``, "The Noam schedule".
"""
import math
from typing import List, Optional, Union

from mmengine.optim import BaseOptimWrapper
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from torch.optim import Optimizer

from mmpcm.registry import PARAM_SCHEDULERS

OptimizerType = Union[Optimizer, BaseOptimWrapper]


def noam_value(step: int,
               model_size: int = 512,
               warmup: float = 10000,
               factor: float = 1.0) -> float:
    """The Noam schedule's value at a 1-based step.

    Args:
        step (int): ``t``, the 1-based step (steps taken + 1).
        model_size (int): Model width ``d``. Defaults to 512.
        warmup (float): Warm-up length in steps; the peak is at ``t = warmup``.
            Defaults to 10000.
        factor (float): Overall scale. Defaults to 1.0.

    Returns:
        float: ``factor * d**-0.5 * min(t**-0.5, t * warmup**-1.5)``.

    Raises:
        ValueError: If ``step`` is below 1.
    """
    if step < 1:
        raise ValueError(f'step is 1-based, got {step}')
    return factor * model_size**-0.5 * min(step**-0.5, step * warmup**-1.5)


@PARAM_SCHEDULERS.register_module()
class NoamParamScheduler(_ParamScheduler):
    """Sets a parameter to the Noam schedule's value (not chainable).

    The value at scheduler step ``last_step`` (0 at ``begin``) is
    :func:`noam_value` of ``t = last_step + 1``; the parameter's initial
    value is ignored, as in X-modaler's ``NoamLR``. Outside ``[begin, end)``
    the parameter is left as it is.

    Args:
        optimizer (Optimizer | BaseOptimWrapper): The (wrapped) optimizer.
        param_name (str): Name of the scheduled parameter, e.g. ``lr``.
        model_size (int): Model width ``d``. Defaults to 512.
        warmup (float): Warm-up length in steps (iterations, or epochs when
            ``by_epoch=True``). Defaults to 10000.
        factor (float): Overall scale. Defaults to 1.0.
        begin (int): Step at which the schedule starts (``t = 1`` there).
            Defaults to 0.
        end (int): Step at which it stops updating the parameter.
            Defaults to INF.
        last_step (int): Index of the last step, for resuming without a
            state dict. Defaults to -1.
        by_epoch (bool): Whether steps are epochs. Defaults to False:
            the Noam schedule is iteration-based.
        verbose (bool): Whether to log each update. Defaults to False.

    Raises:
        ValueError: If ``model_size``, ``warmup`` or ``factor`` is not
            positive, or ``end <= begin``.
    """

    def __init__(self,
                 optimizer: OptimizerType,
                 param_name: str,
                 model_size: int = 512,
                 warmup: float = 10000,
                 factor: float = 1.0,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = False,
                 verbose: bool = False):
        if model_size <= 0 or warmup <= 0 or factor <= 0:
            raise ValueError(
                'model_size, warmup and factor must be positive, got '
                f'{model_size}, {warmup}, {factor}')
        self.model_size = model_size
        self.warmup = warmup
        self.factor = factor
        super().__init__(
            optimizer,
            param_name=param_name,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              warmup: float = 10000,
                              factor: float = 1.0,
                              begin: int = 0,
                              end: int = INF,
                              by_epoch: bool = True,
                              epoch_length: Optional[int] = None,
                              **kwargs) -> 'NoamParamScheduler':
        """Build an iteration-based scheduler from epoch-based arguments.

        Used by ``convert_to_iter_based=True``. The epoch curve is stretched
        in time: ``begin``, ``end`` and ``warmup`` are multiplied by
        ``epoch_length`` and ``factor`` by ``sqrt(epoch_length)``, so the
        value at the last iteration of epoch ``e`` equals the epoch-based
        value at ``t = e + 1`` (the peak value is unchanged).

        Args:
            *args: Positional arguments of the constructor.
            warmup (float): Warm-up length in epochs.
                Defaults to 10000.
            factor (float): Overall scale. Defaults to 1.0.
            begin (int): First epoch. Defaults to 0.
            end (int): End epoch. Defaults to INF.
            by_epoch (bool): Must be True. Defaults to True.
            epoch_length (int, optional): Iterations per epoch (the Runner
                passes it). Defaults to None.
            **kwargs: Other keyword arguments of the constructor.

        Returns:
            NoamParamScheduler: The iteration-based scheduler.

        Raises:
            ValueError: If ``by_epoch`` is False or ``epoch_length`` is not
                a positive integer.
        """
        if not by_epoch:
            raise ValueError('Only epoch-based arguments (by_epoch=True) can '
                             'be converted to iteration-based.')
        if epoch_length is None or epoch_length <= 0:
            raise ValueError('epoch_length must be a positive integer, got '
                             f'{epoch_length}')
        return cls(
            *args,
            warmup=warmup * epoch_length,
            factor=factor * math.sqrt(epoch_length),
            begin=int(begin * epoch_length),
            end=end if end == INF else int(end * epoch_length),
            by_epoch=False,
            **kwargs)

    def _get_value(self) -> List[float]:
        """Compute the value for the current step (absolute, not chained).

        Returns:
            list[float]: The same value for every parameter group.
        """
        value = noam_value(self.last_step + 1, self.model_size, self.warmup,
                           self.factor)
        return [value for _ in self.optimizer.param_groups]


@PARAM_SCHEDULERS.register_module()
class NoamLR(LRSchedulerMixin, NoamParamScheduler):
    """Noam learning-rate schedule, as in PCM-Net's (X-modaler) release.

    ``lr = factor * model_size**-0.5 * min(t**-0.5, t * warmup**-1.5)`` with
    ``t`` = scheduler steps taken + 1; the optimizer's own ``lr`` is ignored.
    Example config::

        param_scheduler = dict(
            type='NoamLR', model_size=512, warmup=10000, by_epoch=False)

    Args:
        optimizer (Optimizer | BaseOptimWrapper): The (wrapped) optimizer.
        model_size (int): Model width ``d``. Defaults to 512.
        warmup (float): Warm-up length in steps. Defaults to 10000.
        factor (float): Overall scale. Defaults to 1.0.
        begin (int): Step at which the schedule starts (``t = 1`` there).
            Defaults to 0.
        end (int): Step at which it stops updating the lr. Defaults to INF.
        last_step (int): Index of the last step, for resuming without a
            state dict. Defaults to -1.
        by_epoch (bool): Whether steps are epochs. Defaults to False.
        verbose (bool): Whether to log each update. Defaults to False.
    """
