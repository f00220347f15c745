"""Captions tokenized in the data loader (PCMCaptionIdsHook) train exactly
as captions tokenized in the step, and give the compiled step fixed
shapes."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmpcm.apis import prepare_cfg
from mmpcm.datasets import SynthImgCapDataset, pcm_collate
from mmpcm.models import PCMCaptionHead, WordVocabulary
from mmpcm.models.utils import EncodedCaptions
from mmpcm.testing import SMOKE_CAPTIONS, write_smoke_data

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')


@pytest.fixture(scope='module')
def smoke_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('caption_ids') / 'data' / 'smoke'
    write_smoke_data(str(root))
    return root


def _head(max_len=12, **kw):
    torch.manual_seed(0)
    vocab = WordVocabulary.from_captions(SMOKE_CAPTIONS[:6], min_count=1)
    return PCMCaptionHead(vocab, model_dim=16, num_layers=1, num_heads=2,
                          ffn_dim=32, max_len=max_len, **kw)


def test_rows_hold_bos_words_eos_then_padding():
    head = _head(max_len=5)
    vocab = head.vocab
    row = head.tokenizer('A red ball, on the green grass!')  # 7 words, cut
    assert row.dtype == np.int64 and row.shape == (6,)
    words = [vocab.words[i] for i in row[1:5]]
    assert row[0] == vocab.bos_id and words == ['a', 'red', 'ball', 'on']
    assert row[5] == vocab.eos_id
    short = head.tokenizer('a zebra')  # unknown word, then padding
    assert short.tolist() == [vocab.bos_id, vocab._index['a'], vocab.unk_id,
                              vocab.eos_id, vocab.pad_id, vocab.pad_id]
    enc = EncodedCaptions.from_rows(torch.from_numpy(np.stack([row, short])),
                                    vocab.pad_id)
    ref = vocab.encode_batch(['A red ball, on the green grass!', 'a zebra'],
                             max_len=5)
    assert torch.equal(enc.input_ids, ref.input_ids)
    assert torch.equal(enc.target_ids, ref.target_ids)


@pytest.mark.parametrize('trim', [True, False])
def test_head_loss_from_rows_equals_loss_from_text(trim):
    head = _head(trim_padding=trim).eval()
    captions = SMOKE_CAPTIONS[:4]
    memory, padding = torch.randn(4, 5, 16), torch.zeros(4, 5, dtype=torch.bool)
    scores = torch.tensor([0.2, 0.3, 0.25, 0.31])
    rows = torch.from_numpy(np.stack([head.tokenizer(c) for c in captions]))
    from_text = head.loss(memory, padding, captions, scores)['loss']
    from_rows = head.loss(memory, padding, rows, scores)['loss']
    if trim:  # the same arithmetic: bit for bit
        assert torch.equal(from_text, from_rows)
    else:  # more (ignored) padding positions: rounding only
        assert torch.allclose(from_text, from_rows, atol=1e-6)
    enc = head._encode_captions(rows, torch.device('cpu'))
    assert enc.input_ids.shape[1] == (10 if trim else 12)  # longest: 9 words


def test_compiled_step_keeps_rows_at_max_len():
    """Under ``torch.compile`` the head never trims (that reads the
    longest caption back from the device and makes the shapes depend on
    the data): the traced step sees ``max_len`` positions whatever
    ``trim_padding`` says, so the paper configs' compiled step has static
    shapes. Without the check the compiled call trims to 10 positions."""
    head = _head(trim_padding=True)
    rows = torch.from_numpy(np.stack([head.tokenizer(c)
                                      for c in SMOKE_CAPTIONS[:4]]))

    def encode(r):
        enc = head._encode_captions(r, torch.device('cpu'))
        return enc.input_ids, enc.target_ids

    torch._dynamo.reset()
    try:
        inputs, targets = torch.compile(encode, backend='eager',
                                        fullgraph=True)(rows)
    finally:
        torch._dynamo.reset()
    assert inputs.shape == targets.shape == (4, 12)
    assert torch.equal(inputs, rows[:, :-1])
    assert torch.equal(targets, rows[:, 1:])
    assert encode(rows)[0].shape == (4, 10)  # eager: trimmed


def test_rows_of_another_max_len_are_refused():
    head = _head(max_len=12)
    rows = torch.from_numpy(np.stack([_head(max_len=8).tokenizer('a dog')]))
    with pytest.raises(ValueError, match=r'\(B, 13\), got \(1, 9\)'):
        head.loss(torch.randn(1, 3, 16), torch.zeros(1, 3, dtype=torch.bool),
                  rows)


def test_dataset_emits_ids_and_scores_once_given_a_tokenizer(smoke_root):
    dataset = SynthImgCapDataset(str(smoke_root / 'train'))
    assert 'caption_ids' not in dataset[0]['inputs']
    head = _head()
    dataset.set_caption_tokenizer(head.tokenizer)
    batch = pcm_collate([dataset[i] for i in range(3)])
    inputs = batch['inputs']
    assert inputs['caption_ids'].shape == (3, 13)
    assert inputs['caption_ids'].dtype == torch.int64
    assert inputs['clip_score'].tolist() == pytest.approx([0.3] * 3)
    texts = [head.vocab.decode(r[1:]) for r in inputs['caption_ids'].tolist()]
    assert texts == [s.gt_caption for s in batch['data_samples']]
    captionless = SynthImgCapDataset(str(smoke_root / 'test'),
                                     with_caption=False, test_mode=True)
    with pytest.raises(ValueError, match='with_caption=True'):
        captionless.set_caption_tokenizer(head.tokenizer)


def _runner(smoke_root, work_dir, hooks, options=None, train_cfg=None):
    """A Runner of the smoke config on ``smoke_root`` (2 epochs unless
    ``train_cfg`` replaces the loop), no validation."""
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = train_cfg or dict(by_epoch=True, max_epochs=2)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.custom_hooks = hooks
    data_root = str(smoke_root)
    cfg.merge_from_dict({
        'model.head.vocab.data_root': data_root + '/train',
        'model.neck.concepts': data_root + '/concepts.safetensors',
        'train_dataloader.dataset.data_root': data_root + '/train',
        **(options or {})})
    return Runner.from_cfg(prepare_cfg(cfg))


def _train(smoke_root, work_dir, hooks, train=True, **head):
    runner = _runner(smoke_root, work_dir, hooks,
                     {f'model.head.{k}': v for k, v in head.items()})
    if train:
        runner.train()
    return runner


def test_training_with_loader_ids_is_bitwise_the_text_path(smoke_root,
                                                           tmp_path):
    """Same seed, with and without the hook: identical weights after
    training (same ids, same shapes, so the same dropout draws)."""
    torch.set_num_threads(1)
    with_ids = _train(smoke_root, tmp_path / 'ids',
                      [dict(type='PCMCaptionIdsHook')])
    dataset = with_ids.train_dataloader.dataset
    assert dataset.caption_tokenizer is not None
    assert 'caption_ids' in dataset[0]['inputs']
    as_text = _train(smoke_root, tmp_path / 'text', [])
    assert as_text.train_dataloader.dataset.caption_tokenizer is None
    a, b = with_ids.model.state_dict(), as_text.model.state_dict()
    assert a.keys() == b.keys() and with_ids.iter == as_text.iter == 4
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    # The comparison can fail: training moved the weights, and untrimmed
    # rows (other shapes, so other dropout draws) end elsewhere.
    start = _train(smoke_root, tmp_path / 'init', [], train=False)
    key = 'head.output.weight'
    assert not torch.equal(start.model.state_dict()[key], a[key])
    static = _train(smoke_root, tmp_path / 'static',
                    [dict(type='PCMCaptionIdsHook')], trim_padding=False)
    assert not torch.equal(static.model.state_dict()[key], a[key])


def test_iteration_based_loop_with_workers_gets_ids(smoke_root, tmp_path,
                                                    monkeypatch):
    """IterBasedTrainLoop forks its workers before before_train: the hook
    restarts them, so the step never tokenizes text."""
    calls = []
    encode_batch = WordVocabulary.encode_batch

    def counted(self, *args, **kwargs):
        calls.append(len(args[0]))
        return encode_batch(self, *args, **kwargs)

    monkeypatch.setattr(WordVocabulary, 'encode_batch', counted)
    runner = _runner(smoke_root, tmp_path / 'iter',
                     [dict(type='PCMCaptionIdsHook')], {
                         'log_processor.by_epoch': False,
                         'train_dataloader.num_workers': 2,
                         'train_dataloader.persistent_workers': True,
                         'train_dataloader.sampler': dict(
                             type='InfiniteSampler', shuffle=True)},
                     train_cfg=dict(type='IterBasedTrainLoop', max_iters=3))
    runner.train()
    assert runner.iter == 3
    assert calls == []  # every batch arrived as ids


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
    """mmengine's ``compile`` with fixed shapes (ids from the loader, kept
    at ``max_len`` positions in a compiled step): after a few warm-up steps no graph is compiled
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
    runner = _runner(smoke_root, tmp_path / 'compiled',
                     [dict(type='PCMCaptionIdsHook')], {
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
