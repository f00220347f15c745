"""Resume with the config's parameter schedule, not the checkpoint's."""
import copy
from types import SimpleNamespace
from typing import Any, List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
from mmengine.runner import Runner

from mmpcm.registry import HOOKS

# What a scheduler's state dict holds besides its settings: where it is in
# the schedule, and the values it started from (the optimizer's initial lr,
# which the optimizer's own state restores).
_COUNTERS = frozenset({'last_step', '_global_step', '_last_value',
                       'base_values', '_get_value_called_within_step'})
_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """Whether two setting values are equal (arrays compared by repr)."""
    if a is b:
        return True
    if a is _MISSING or b is _MISSING:
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  e.g. an array's ambiguous truth
        return repr(a) == repr(b)


def _fmt(value: Any) -> str:
    if value is _MISSING:
        return '(none)'
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def _last_step(global_step: int, begin: int, end: int) -> int:
    """``last_step`` of a scheduler after ``global_step`` steps.

    mmengine's ``_ParamScheduler`` steps once when built and once per epoch
    or iteration after that, counting ``_global_step``; ``last_step`` counts
    the steps inside ``[begin, end)``, from -1 (not started).
    """
    if global_step < begin:
        return -1
    return min(global_step, end - 1) - begin


@HOOKS.register_module()
class PCMResumeScheduleHook(Hook):
    """On resume, run the config's ``param_scheduler``, from the saved step.

    mmengine's ``Runner.resume`` restores each parameter scheduler with
    ``load_state_dict``, i.e. its whole ``__dict__``: the settings too
    (``warmup``, ``factor``, ``begin``, ``end``, ``eta_min``, ...). A run
    resumed with a changed schedule would follow the checkpoint's values
    while its logged and saved config show the new ones. This hook makes
    the config win and keeps only the position in the schedule:

    * ``after_load_checkpoint`` (resume only, before the schedulers load
      their state): each setting of the checkpoint's scheduler state that
      differs from the config-built scheduler is replaced by the config's,
      with one log line per value, e.g. ``resume:
      param_scheduler[0].warmup 4000 -> 2000 (config applied, step counter
      kept)``. The step counter (``_global_step``) is kept; ``last_step``
      (steps inside ``[begin, end)``) is recomputed when ``begin`` or
      ``end`` changed, and the counter is taken from the checkpoint's
      epoch or iteration when ``by_epoch`` changed.
    * ``before_train``: the current value (e.g. the lr of the first resumed
      iteration, which the optimizer's restored state holds from the old
      schedule) is set to the value the config's schedule gives at the
      kept step, found by replaying that parameter's schedulers from their
      base values (:func:`_replayed_values`), with a log line. Where that
      is not possible (see there), the new values apply from the next
      scheduler step, and a line says so.

    The optimizer's own settings (e.g. its ``lr``, the base value of
    multiplicative schedules) are restored from the checkpoint by mmengine
    as before. :func:`mmpcm.apis.prepare_cfg` adds this hook to every run
    with a ``param_scheduler``; without resuming it does nothing.
    """
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._changed: List[Tuple[str, _ParamScheduler,
                                  Sequence[_ParamScheduler]]] = []

    # ------------------------------------------------------------ settings
    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        """Put the config's settings into the checkpoint's scheduler states.

        Args:
            runner (Runner): The runner resuming.
            checkpoint (dict): What was read from the file; its
                ``param_schedulers`` entries are edited in place, before
                ``Runner.resume`` loads them.
        """
        self._changed = []
        saved = checkpoint.get('param_schedulers')
        built = runner.param_schedulers
        if not getattr(runner, '_resume', False) or not saved or not built:
            return
        if isinstance(built, dict) and isinstance(saved, dict):
            groups = [(f'param_scheduler[{name}]', built[name],
                       saved.get(name) or []) for name in built]
        elif isinstance(built, list) and isinstance(saved, list):
            groups = [('param_scheduler', built, saved)]
        else:
            return
        meta = checkpoint.get('meta') or {}
        for prefix, schedulers, states in groups:
            if not all(isinstance(s, _ParamScheduler) for s in schedulers):
                return  # not built yet: Runner.resume outside train()
            if len(schedulers) != len(states):
                runner.logger.warning(
                    f'resume: the config has {len(schedulers)} '
                    f'{prefix} entries, the checkpoint {len(states)}; the '
                    f'first {min(len(schedulers), len(states))} keep their '
                    'step counters, by position')
            for index, (scheduler, state) in enumerate(zip(schedulers,
                                                           states)):
                name = f'{prefix}[{index}]'
                changes = self._apply_config(scheduler, state, meta)
                for key, old, new in changes:
                    runner.logger.info(
                        f'resume: {name}.{key} {_fmt(old)} -> {_fmt(new)} '
                        '(config applied, step counter kept)')
                if changes:
                    self._changed.append((name, scheduler, schedulers))

    @staticmethod
    def _apply_config(scheduler: _ParamScheduler, state: dict,
                      meta: dict) -> List[Tuple[str, Any, Any]]:
        """Replace the settings in ``state`` by ``scheduler``'s (in place).

        Args:
            scheduler (_ParamScheduler): Built from the config.
            state (dict): The checkpoint's state of the same scheduler.
            meta (dict): The checkpoint's ``meta`` (``epoch``, ``iter``).

        Returns:
            list[tuple[str, Any, Any]]: ``(setting, checkpoint's value,
            config's value)`` of each difference.
        """
        ours = scheduler.state_dict()
        changes = []
        for key in sorted(set(ours) | set(state)):
            if key in _COUNTERS:
                continue
            old, new = state.get(key, _MISSING), ours.get(key, _MISSING)
            if _same(old, new):
                continue
            changes.append((key, old, new))
            if new is _MISSING:
                del state[key]
            else:
                state[key] = new
        changed = {key for key, _, _ in changes}
        if 'by_epoch' in changed and ('epoch' in meta and 'iter' in meta):
            state['_global_step'] = (meta['epoch'] if scheduler.by_epoch else
                                     meta['iter'])
        if changed & {'begin', 'end', 'by_epoch'} and '_global_step' in state:
            state['last_step'] = _last_step(state['_global_step'],
                                            scheduler.begin, scheduler.end)
        return changes

    # ------------------------------------------------------------ values
    def before_train(self, runner: Runner) -> None:
        """Set each changed schedule's current value to the new schedule's."""
        for name, scheduler, schedulers in self._changed:
            groups = scheduler.optimizer.param_groups
            param = scheduler.param_name
            values = _replayed_values(scheduler, schedulers)
            if values is None:
                runner.logger.info(
                    f'resume: {name}: {param} stays '
                    f'{_fmt(float(groups[0][param]))} until its next step, '
                    "from where the config's values apply")
                continue
            for group, value in zip(groups, values):
                group[param] = value
                if getattr(scheduler, 'use_betas', False):  # Adam's beta_0
                    group['betas'] = (value, group['betas'][1])
            for other in schedulers:
                if other.param_name == param:
                    other._last_value = [group[param] for group in groups]
            runner.logger.info(
                f'resume: {name}: {param} set to {_fmt(float(values[0]))}, '
                f'the config\'s value after {scheduler._global_step} steps')
        self._changed = []


_MAX_REPLAY = 10_000_000


def _replayed_values(scheduler: _ParamScheduler,
                     schedulers: Sequence[_ParamScheduler]
                     ) -> Optional[List[float]]:
    """The value the config's schedule gives at the kept step.

    The schedulers of ``scheduler``'s parameter are replayed, in order, on
    copies that share a stand-in optimizer starting from the base values,
    for the kept number of steps: the value a run with the config's
    schedule from the start would hold now. Chained schedulers (each
    multiplies the current value) need this; ``NoamLR``'s value depends on
    the step only.

    Args:
        scheduler (_ParamScheduler): A scheduler whose settings changed.
        schedulers (Sequence[_ParamScheduler]): All of its optimizer's.

    Returns:
        list[float], optional: One value per parameter group; None when the
        schedule cannot be replayed (epoch- and iteration-based schedulers
        on one parameter, a ``ReduceOnPlateau`` one, unequal step counters,
        or more than ten million steps).
    """
    from mmengine.optim.scheduler.param_scheduler import \
        ReduceOnPlateauParamScheduler
    param = scheduler.param_name
    chain = [s for s in schedulers if s.param_name == param]
    steps = scheduler._global_step
    if (any(isinstance(s, ReduceOnPlateauParamScheduler) for s in chain)
            or len({s.by_epoch for s in chain}) > 1
            or any(s._global_step != steps for s in chain)
            or not 0 <= steps <= _MAX_REPLAY):
        return None
    groups = [{param: base, f'initial_{param}': base}
              for base in scheduler.base_values]
    stand_in = SimpleNamespace(param_groups=groups)
    copies = []
    for original in chain:
        replay = copy.copy(original)
        replay.optimizer = stand_in
        replay.last_step = -1
        copies.append(replay)
    # As _ParamScheduler.step: once when built (step 0), then once per step.
    for step in range(steps + 1):
        for replay in copies:
            if replay.begin <= step < replay.end:
                replay.last_step += 1
                for group, value in zip(groups, replay._get_value()):
                    group[param] = value
    return [group[param] for group in groups]
