"""Write the test run's results gallery (``tools/test.py --show-dir``)."""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import collect_results, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmpcm.registry import HOOKS
from .prediction_dump_hook import prediction_of

__all__ = ['PCMGalleryHook']


@HOOKS.register_module()
class PCMGalleryHook(Hook):
    """Collect the test predictions with PCM's concepts and write a gallery.

    At test time the model is asked for its concept picture
    (``PCMCaptioner.explain_predictions``); each image's prediction,
    references, per-image scores (CIDEr-D from the run's
    ``PCMCaptionMetric``, CLIP-S from its ``PCMCLIPScore``, hallucinated
    objects from its first ``PCMCHAIRMetric``; each only when the test
    evaluator has the metric) and concepts go into ``<out_dir>/index.html``
    (:func:`~mmpcm.visualization.gallery.write_gallery`). The per-image
    values are read from the run's own metric instances through their
    side-effect-free methods (``per_image_cider``, ``caption_objects``) and
    the per-image CLIP-S rows each batch adds to ``results``, so nothing is
    computed twice.

    Args:
        out_dir (str): The gallery folder.
        image_root (str, optional): A folder of the test images named by
            image id; default: what the test dataset knows (image paths, or
            the files a feature store's extraction recorded).
        title (str, optional): Page title. Defaults to the work dir's name.
        config (str, optional): The config file, for the header.
        checkpoint (str, optional): The model file, for the header.
        thumb_size (int): Thumbnail side in pixels. Defaults to 160.
    """
    priority = 'LOW'

    def __init__(self,
                 out_dir: str,
                 image_root: Optional[str] = None,
                 title: Optional[str] = None,
                 config: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 thumb_size: int = 160) -> None:
        self.out_dir = out_dir
        self.image_root = image_root
        self.title = title
        self.config = config
        self.checkpoint = checkpoint
        self.thumb_size = thumb_size
        self.path: Optional[str] = None
        self._items: List[dict] = []
        self._clip_rows: List[dict] = []

    @staticmethod
    def _model(runner: Runner) -> Any:
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _metrics(runner: Runner, type_name: str) -> List[Any]:
        """The run's test metrics of one class."""
        return [m for m in runner.test_loop.evaluator.metrics
                if type(m).__name__ == type_name]

    def before_test_epoch(self, runner: Runner) -> None:
        self._items, self._clip_rows = [], []
        self._model(runner).explain_predictions = True

    def after_test_iter(self,
                        runner: Runner,
                        batch_idx: int,
                        data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        """Keep the batch's predictions and concepts, and the CLIP-S rows
        the evaluator's ``process`` (run just before) added."""
        outputs = outputs or []
        self._items += [dict(prediction_of(sample),
                             concepts=sample.get('pcm_concepts'))
                        for sample in outputs]
        for metric in self._metrics(runner, 'PCMCLIPScore')[:1]:
            self._clip_rows += metric.results[-len(outputs):] if outputs \
                else []

    def after_test_epoch(self,
                         runner: Runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        self._model(runner).explain_predictions = False
        size = len(runner.test_dataloader.dataset)
        items = collect_results(self._items, size, 'cpu')
        clip_s = collect_results(self._clip_rows, size, 'cpu')
        self._items, self._clip_rows = [], []
        if not is_main_process():
            return
        self.path = self._write(runner, items, clip_s, metrics or {})
        runner.logger.info(f'Wrote the results gallery of {len(items)} '
                           f'images to {self.path}')

    def _write(self, runner: Runner, items: List[dict],
               clip_s: Optional[List[dict]],
               metrics: Dict[str, float]) -> str:
        from mmpcm.text import tokenize_caption
        from mmpcm.visualization import concept_view
        from mmpcm.visualization.gallery import (GalleryEntry, GalleryHeader,
                                                 write_gallery)
        from mmpcm.visualization.images import dataset_image_files
        model = self._model(runner)
        dataset = runner.test_dataloader.dataset
        files = dataset_image_files(dataset, self.image_root)
        if not files:
            runner.logger.warning(
                'results gallery: the test images are not known (the test '
                'features do not record their files); pass --show-image-root '
                'FOLDER for thumbnails')
        predictions = {it['image_id']: it['caption'] for it in items}
        caption_metrics = self._metrics(runner, 'PCMCaptionMetric')
        references, cider = {}, {}
        if caption_metrics:
            references = caption_metrics[0].references
            cider = caption_metrics[0].per_image_cider(predictions)
        clip_metrics = self._metrics(runner, 'PCMCLIPScore')
        clip_scale = clip_metrics[0].scale if clip_metrics else 1
        clip_by_id = {r['image_id']: clip_scale * r['clip_s']
                      for r in clip_s or []}
        chairs = self._metrics(runner, 'PCMCHAIRMetric')
        words = model.neck.concept_words
        entries = []
        for item in items:
            image_id = item['image_id']
            scores = {}
            if image_id in cider:
                scores['CIDEr'] = cider[image_id]
            if image_id in clip_by_id:
                scores['CLIP-S'] = clip_by_id[image_id]
            entry = GalleryEntry(
                image_id=str(image_id), caption=item['caption'],
                image_path=files.get(str(image_id)),
                references=list(references.get(image_id, [])),
                scores=scores,
                concepts=(concept_view(item['concepts'], words)
                          if item['concepts'] is not None else None))
            if chairs:
                found = chairs[0].caption_objects(image_id, item['caption'])
                entry.words = tokenize_caption(item['caption'])
                entry.hallucinated = {
                    i for (start, end), name in found.spans.items()
                    if name in found.hallucinated
                    for i in range(start, end)}
                entry.hallucinated_objects = sorted(found.hallucinated)
            entries.append(entry)
        header = GalleryHeader(
            title=self.title or (
                osp.splitext(osp.basename(self.config))[0] if self.config
                else osp.basename(runner.work_dir.rstrip('/'))),
            config=self.config, checkpoint=self.checkpoint,
            metrics={k: float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not k.split(
                         '/')[-1].startswith('num_')})
        preprocess = getattr(model.backbone, 'preprocess_cfg',
                             model.backbone.image_size)
        return write_gallery(self.out_dir, entries, header, preprocess,
                             self.thumb_size)
