"""Tokenize training captions in the data loader, with the model's vocabulary."""
from typing import List

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmpcm.registry import HOOKS


def _caption_datasets(dataset) -> List:
    """Datasets that can tokenize captions, inside mmengine's wrappers."""
    if hasattr(dataset, 'set_caption_tokenizer'):
        return [dataset]
    inner = list(getattr(dataset, 'datasets', []))  # ConcatDataset
    if hasattr(dataset, 'dataset'):  # RepeatDataset, ClassBalancedDataset
        inner.append(dataset.dataset)
    return [d for child in inner for d in _caption_datasets(child)]


def _restart_started_workers(loop) -> bool:
    """Restart loader workers forked before the tokenizer was set.

    mmengine's ``IterBasedTrainLoop`` creates its data iterator, and so its
    worker processes, when the loop is built, before ``before_train``:
    those workers hold the dataset without the tokenizer. Nothing has been
    consumed yet, so a new iterator over the same loader (same sampler,
    same seed) gives the batches the old one would have. Epoch-based loops
    start their workers in each epoch, after this hook: nothing to do.

    Returns:
        bool: Whether workers were restarted.
    """
    started = getattr(loop, 'dataloader_iterator', None)
    loader = getattr(loop, 'dataloader', None)
    if started is None or getattr(loader, 'num_workers', 0) == 0:
        return False
    old = getattr(started, '_iterator', None)
    if hasattr(old, '_shutdown_workers'):
        old._shutdown_workers()
    if getattr(loader, '_iterator', None) is old:  # persistent_workers
        loader._iterator = None
    loop.dataloader_iterator = type(started)(loader)
    return True


@HOOKS.register_module()
class PCMCaptionIdsHook(Hook):
    """Hand the caption head's tokenizer to the training dataset.

    The training step then receives captions as a ``(B, max_len + 1)`` id
    tensor tokenized in the loader workers, instead of strings tokenized in
    the main process at every step (which also kept ``torch.compile`` from
    tracing the step). The ids come from the model's own vocabulary and
    ``max_len``, so they cannot disagree with the head. The loss is the same
    either way (tested); with a model or dataset that cannot do it (no
    ``head.tokenizer``, no ``set_caption_tokenizer``), nothing changes and
    captions stay text.

    It runs in ``before_train``, on every rank, and again on resume. Epoch-
    based loops start their loader workers after it; an iteration-based
    loop has started them already, so they are restarted (nothing has been
    consumed: the batches are the same).
    """
    priority = 'NORMAL'

    def before_train(self, runner: Runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        tokenizer = getattr(getattr(model, 'head', None), 'tokenizer', None)
        datasets = _caption_datasets(runner.train_dataloader.dataset)
        if tokenizer is None or not datasets:
            runner.logger.info('PCMCaptionIdsHook: the model or training '
                               'dataset cannot tokenize in the loader; '
                               'captions are tokenized in the training step.')
            return
        for dataset in datasets:
            dataset.set_caption_tokenizer(tokenizer)
        if _restart_started_workers(runner.train_loop):
            runner.logger.info('PCMCaptionIdsHook: restarted the training '
                               'loader\'s workers, started before the hook.')
        runner.logger.info(
            f'Training captions are tokenized in the data loader '
            f'({len(tokenizer.vocab)} words, max_len {tokenizer.max_len}).')
