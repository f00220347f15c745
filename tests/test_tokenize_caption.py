"""Training captions become id rows in the data loader
(PCMTokenizeCaption, with the vocab.json the config names), the head splits
them at max_len positions, and the compiled step keeps fixed shapes."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmpcm.apis import prepare_cfg
from mmpcm.datasets import PCMTokenizeCaption, SynthImgCapDataset, pcm_collate
from mmpcm.models import PCMCaptionHead
from mmpcm.testing import SMOKE_CAPTIONS, write_smoke_data
from mmpcm.text import WordVocabulary
from mmpcm.utils.cli import InputError, MissingInputError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')


@pytest.fixture(scope='module')
def smoke_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('caption_ids') / 'data' / 'smoke'
    write_smoke_data(str(root))
    return root


def _vocab():
    return WordVocabulary.from_captions(SMOKE_CAPTIONS[:6], min_count=1)


def _head(max_len=12, **kw):
    torch.manual_seed(0)
    return PCMCaptionHead(_vocab(), model_dim=16, num_layers=1, num_heads=2,
                          ffn_dim=32, max_len=max_len, **kw)


def _tokenize(caption, vocab=None, max_len=12):
    transform = PCMTokenizeCaption(vocab or _vocab(), max_len=max_len)
    from mmpretrain.structures import DataSample
    results = transform(dict(inputs={},
                             data_samples=DataSample(gt_caption=caption)))
    return results['inputs']['caption_ids']


def test_rows_hold_bos_words_eos_then_padding():
    vocab = _vocab()
    row = _tokenize('A red ball, on the green grass!', vocab, max_len=5)
    assert row.dtype == np.int64 and row.shape == (6,)  # 7 words, cut to 4
    words = [vocab.words[i] for i in row[1:5]]
    assert row[0] == vocab.bos_id and words == ['a', 'red', 'ball', 'on']
    assert row[5] == vocab.eos_id
    short = _tokenize('a zebra', vocab, max_len=5)  # unknown word, padding
    assert short.tolist() == [vocab.bos_id, vocab._index['a'], vocab.unk_id,
                              vocab.eos_id, vocab.pad_id, vocab.pad_id]
    assert np.array_equal(vocab.encode_rows(['a zebra'], 5)[0], short)


def test_transform_reads_the_vocabulary_file(tmp_path):
    path = tmp_path / 'vocab.json'
    _vocab().save(str(path))
    assert PCMTokenizeCaption(str(path)).vocab == _vocab()
    with pytest.raises(MissingInputError, match='prepare_corpus'):
        PCMTokenizeCaption(str(tmp_path / 'missing.json'))
    path.write_text('["a", "b"]')
    with pytest.raises(InputError, match='must start with'):
        PCMTokenizeCaption(str(path))
    path.write_text('["<pad>", "<bos>",\n')
    with pytest.raises(InputError, match=r'not valid JSON \(.*line 2\)'):
        PCMTokenizeCaption(str(path))
    with pytest.raises(TypeError, match='prepare_corpus'):
        PCMTokenizeCaption(dict(data_root='x', min_count=5))


def test_padding_positions_leave_the_loss_unchanged():
    """The head always takes max_len positions; the loss equals the loss of
    the same rows cut to the longest caption (padding targets ignored)."""
    head = _head().eval()
    captions = SMOKE_CAPTIONS[:4]
    memory, padding = torch.randn(4, 5, 16), torch.zeros(4, 5, dtype=torch.bool)
    scores = torch.tensor([0.2, 0.3, 0.25, 0.31])
    rows = torch.from_numpy(np.stack([_tokenize(c) for c in captions]))
    full = head.loss(memory, padding, rows, scores)['loss']
    split = head.split_caption_ids(rows)
    assert split.input_ids.shape == split.target_ids.shape == (4, 12)
    longest = int((rows != head.vocab.pad_id).sum(1).max())  # <bos>..<eos>
    assert longest < 13  # there is padding to cut
    cut = rows[:, :longest]
    logits = head(cut[:, :-1], memory, padding)
    logits = head.mask_never_emitted(logits.float())
    trimmed = head.loss_module(logits, cut[:, 1:], scores)
    assert torch.allclose(full, trimmed, atol=1e-6)
    # It can fail: the targets matter.
    shuffled = head.loss(memory, padding, rows.flip(0), scores)['loss']
    assert not torch.allclose(full, shuffled, atol=1e-6)


def test_rows_of_another_max_len_are_refused():
    head = _head(max_len=12)
    rows = torch.from_numpy(np.stack([_tokenize('a dog', max_len=8)]))
    with pytest.raises(ValueError, match=r'\(B, 13\), got \(1, 9\)'):
        head.loss(torch.randn(1, 3, 16), torch.zeros(1, 3, dtype=torch.bool),
                  rows)


def test_dataset_pipeline_emits_ids_and_scores(smoke_root):
    vocab_file = str(smoke_root / 'vocab.json')
    plain = SynthImgCapDataset(str(smoke_root / 'train'))
    assert 'caption_ids' not in plain[0]['inputs']
    dataset = SynthImgCapDataset(
        str(smoke_root / 'train'),
        pipeline=[dict(type='PCMTokenizeCaption', vocab=vocab_file,
                       max_len=12)])
    batch = pcm_collate([dataset[i] for i in range(3)])
    inputs = batch['inputs']
    assert inputs['caption_ids'].shape == (3, 13)
    assert inputs['caption_ids'].dtype == torch.int64
    assert inputs['clip_score'].tolist() == pytest.approx([0.3] * 3)
    vocab = WordVocabulary.load(vocab_file)
    texts = [vocab.decode(r[1:]) for r in inputs['caption_ids'].tolist()]
    assert texts == [s.gt_caption for s in batch['data_samples']]
    captionless = SynthImgCapDataset(
        str(smoke_root / 'test'), with_caption=False, test_mode=True,
        pipeline=[dict(type='PCMTokenizeCaption', vocab=vocab_file)])
    with pytest.raises(KeyError, match='no gt_caption'):
        captionless[0]


def _runner(smoke_root, work_dir, options=None, train_cfg=None):
    """A Runner of the smoke config on ``smoke_root`` (2 epochs unless
    ``train_cfg`` replaces the loop), no validation."""
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = train_cfg or dict(by_epoch=True, max_epochs=2)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    data_root = str(smoke_root)
    cfg.merge_from_dict({
        'model.head.vocab': data_root + '/vocab.json',
        'model.neck.concepts': data_root + '/concepts.safetensors',
        'train_dataloader.dataset.data_root': data_root + '/train',
        'train_dataloader.dataset.pipeline': [dict(
            type='PCMTokenizeCaption', vocab=data_root + '/vocab.json',
            max_len=12)],
        **(options or {})})
    return Runner.from_cfg(prepare_cfg(cfg))


def test_training_without_the_transform_says_what_to_add(smoke_root,
                                                         tmp_path):
    runner = _runner(smoke_root, tmp_path / 'plain',
                     {'train_dataloader.dataset.pipeline': []})
    with pytest.raises(KeyError, match="PCMTokenizeCaption"):
        runner.train()


_GRAPHS = []


def _counting_backend(gm, example_inputs):
    """A dynamo backend that counts graphs and runs them through AOT
    autograd (dynamo's ``aot_eager``), as inductor would: AOT autograd
    specializes float inputs that a plain eager backend leaves dynamic."""
    _GRAPHS.append(gm)
    return torch._dynamo.lookup_backend('aot_eager')(gm, example_inputs)


class _GraphCount(Hook):
    def __init__(self):
        self.after_iter = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.after_iter.append(len(_GRAPHS))


# The fast recipe's optimizer wrapper: AmpOptimWrapper, bf16 autocast.
FAST_SCHEDULE = osp.join(ROOT, 'configs', '_base_', 'schedules',
                         'noam_fast.py')


@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'amp_bf16'])
def test_compiled_train_step_stops_compiling(smoke_root, tmp_path, amp,
                                             monkeypatch):
    """mmengine's ``compile`` with fixed shapes (id rows from the loader,
    always ``max_len`` positions): after a few warm-up steps no graph is compiled
    any more. It caught two causes of a step recompiled at every
    iteration: mmengine's data preprocessor copied every data sample each
    step and dynamo's guards on the copies failed (8, 9, 10, 11 graphs after
    steps 5 to 8); and foreach Adam, CUDA's default, whose lr AOT autograd
    bakes in, so each Noam step recompiled the optimizer step (the
    schedule's fused Adam fixes it: with ``foreach=True`` this test sees 9,
    10, 11, 12 graphs after steps 5 to 8). The AMP case is the fast
    recipe's wrapper (its CUDA check lifted: autocast runs on the CPU),
    whose ``autocast`` parsed version strings in the step
    (``make_mmengine_autocast_compilable``)."""
    if 'mmpcm_counting' not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(_counting_backend, 'mmpcm_counting')
    options = {}
    if amp:
        from mmengine.optim.optimizer import amp_optimizer_wrapper
        from mmpcm.apis import run_config
        monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                            lambda: True)
        monkeypatch.setattr(run_config, 'check_amp_device', lambda cfg: None)
        options['optim_wrapper'] = Config.fromfile(
            FAST_SCHEDULE).optim_wrapper.to_dict()
    torch._dynamo.reset()
    _GRAPHS.clear()
    count = _GraphCount()
    runner = _runner(smoke_root, tmp_path / 'compiled', {
                         'compile': dict(backend='mmpcm_counting'),
                         'train_dataloader.drop_last': True,
                         'log_processor.by_epoch': False,
                         'train_dataloader.sampler': dict(
                             type='InfiniteSampler', shuffle=True),
                         **options},
                     train_cfg=dict(type='IterBasedTrainLoop', max_iters=10))
    runner.register_hook(count)
    try:
        runner.train()
    finally:
        torch._dynamo.reset()
    # The schedule's fused Adam: CUDA's default foreach Adam would recompile
    # its step at every Noam lr change (8 times over these steps on the CPU
    # with foreach=True, then dynamo's limit sends it back to eager).
    assert runner.optim_wrapper.optimizer.defaults['fused'] is True
    assert type(runner.optim_wrapper).__name__ == (
        'AmpOptimWrapper' if amp else 'OptimWrapper')
    assert count.after_iter[0] > 0  # the step was compiled
    assert count.after_iter[4:] == [count.after_iter[4]] * 6, count.after_iter
