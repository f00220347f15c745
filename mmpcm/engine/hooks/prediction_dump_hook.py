"""Write test predictions as COCO results JSON."""
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import collect_results, is_main_process
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmpcm.registry import HOOKS

PREDICTIONS_FILE = 'predictions.json'


def prediction_of(sample: Any) -> Dict[str, Any]:
    """``{"image_id", "caption"}`` of one output data sample, the id as the
    dataset gives it (a str, or an int for numeric COCO ids)."""
    from mmpcm.evaluation.metrics.references import plain_image_id
    return dict(image_id=plain_image_id(sample.metainfo['image_id']),
                caption=str(sample.pred_caption))


@HOOKS.register_module()
class PCMPredictionDumpHook(Hook):
    """Write the test predictions as COCO results JSON into the log dir.

    ``[{"image_id": ..., "caption": ...}]``, image ids as the dataset gives
    them (str or int), gathered from all ranks in dataset order; written by
    the main rank to ``<work_dir>/<timestamp>/<filename>``. No metric is
    involved, so the evaluation has no side effects.

    Args:
        filename (str): Output file name. Defaults to 'predictions.json'.
    """
    priority = 'LOW'

    def __init__(self, filename: str = PREDICTIONS_FILE) -> None:
        self.filename = filename
        self._results: List[dict] = []
        self.path: Optional[str] = None

    def before_test_epoch(self, runner: Runner) -> None:
        self._results = []

    def after_test_iter(self,
                        runner: Runner,
                        batch_idx: int,
                        data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        self._results += [prediction_of(sample) for sample in outputs or []]

    def after_test_epoch(self,
                         runner: Runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        size = len(runner.test_dataloader.dataset)
        results = collect_results(self._results, size, 'cpu')
        self._results = []
        if is_main_process():
            self.path = osp.join(runner.log_dir, self.filename)
            with open(self.path, 'w', encoding='utf-8') as file:
                json.dump(results, file, ensure_ascii=False)
            runner.logger.info(
                f'Wrote {len(results)} predictions to {self.path}')
