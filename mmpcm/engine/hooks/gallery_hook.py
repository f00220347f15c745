"""Write the test run's results gallery (``tools/test.py --show-dir``)."""
import copy
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import collect_results, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmpcm.registry import HOOKS, METRICS
from .prediction_dump_hook import prediction_of

__all__ = ['PCMGalleryHook']


@HOOKS.register_module()
class PCMGalleryHook(Hook):
    """Collect the test predictions with PCM's concepts and write a gallery.

    At test time the model is asked for its concept picture
    (``PCMCaptioner.explain_predictions``); each image's prediction,
    references, per-image scores (CIDEr-D from the config's
    ``PCMCaptionMetric``, CLIP-S from its ``PCMCLIPScore``, hallucinated
    objects from its first ``PCMCHAIRMetric``; each only when the metric is
    listed) and concepts go into ``<out_dir>/index.html``
    (:func:`~mmpcm.visualization.gallery.write_gallery`). Per-image scores
    come from fresh metric instances built from the same configs, so the
    run's own metrics are untouched.

    Args:
        out_dir (str): The gallery folder.
        metrics (Sequence[dict]): The test evaluator's metric configs.
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
                 metrics: Sequence[dict] = (),
                 image_root: Optional[str] = None,
                 title: Optional[str] = None,
                 config: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 thumb_size: int = 160) -> None:
        self.out_dir = out_dir
        self.metric_cfgs = [copy.deepcopy(dict(m)) for m in metrics]
        self.image_root = image_root
        self.title = title
        self.config = config
        self.checkpoint = checkpoint
        self.thumb_size = thumb_size
        self.path: Optional[str] = None
        self._items: List[dict] = []
        self._clip_s: Any = None

    @staticmethod
    def _model(runner: Runner) -> Any:
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _built(self, type_name: str) -> List[Any]:
        return [METRICS.build(copy.deepcopy(c)) for c in self.metric_cfgs
                if c.get('type') == type_name]

    def before_test_epoch(self, runner: Runner) -> None:
        self._items = []
        self._model(runner).explain_predictions = True
        clip = self._built('PCMCLIPScore')
        self._clip_s = clip[0] if clip else None
        if self._clip_s is not None:
            self._clip_s.dataset_meta = runner.test_dataloader.dataset.metainfo

    def after_test_iter(self,
                        runner: Runner,
                        batch_idx: int,
                        data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        self._items += [dict(prediction_of(sample),
                             concepts=sample.get('pcm_concepts'))
                        for sample in outputs or []]
        if self._clip_s is not None and outputs:
            self._clip_s.process(data_batch, outputs)

    def after_test_epoch(self,
                         runner: Runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        self._model(runner).explain_predictions = False
        size = len(runner.test_dataloader.dataset)
        items = collect_results(self._items, size, 'cpu')
        clip_s = (collect_results(self._clip_s.results, size, 'cpu')
                  if self._clip_s is not None else None)
        self._items = []
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
        caption_metrics = self._built('PCMCaptionMetric')
        references, cider = {}, {}
        if caption_metrics:
            references = caption_metrics[0].references
            cider = caption_metrics[0].per_image_cider(predictions)
        clip_scale = self._clip_s.scale if self._clip_s is not None else 1
        clip_by_id = {r['image_id']: clip_scale * r['clip_s']
                      for r in clip_s or []}
        chairs = self._built('PCMCHAIRMetric')
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
