"""What a file given as a checkpoint is, said in one line on every loading
path (truncated, empty, an image, JSON, a vocabulary, text, a folder), and
a config that does not fit its checkpoint summarised in one line."""
import os
import os.path as osp
import shutil
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import mmpcm.registry  # noqa: F401  (applies the compat patches)
from mmpcm.apis import (PCMCaptionInferencer, apply_checkpoint_to_cfg,
                        build_captioner, load_model_source, prepare_cfg,
                        publish_release, read_release_info)
from mmpcm.apis.best_checkpoint import (CheckpointNotFoundError,
                                        resolve_checkpoint)
from mmpcm.text import WordVocabulary
from mmpcm.models.utils.errors import ConfigMismatchError
from mmpcm.registry import MODELS
from mmpcm.testing import (TinyRegressionDataset, TinyRegressionModel,
                           random_concepts, tiny_captioner_cfg,
                           write_smoke_data)
from mmpcm.utils.checkpoint import (SAFETENSORS, TORCH,
                                    UntrustedCheckpointError,
                                    describe_checkpoint_file,
                                    load_checkpoint_file,
                                    load_trusted_checkpoint)
from mmpcm.utils.cli import InputError, MissingInputError, error_line

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMOKE = osp.join(ROOT, 'configs', 'pcm', 'pcm_smoke.py')
INTERRUPTED = ('the run that wrote it was probably interrupted: use an '
               'earlier checkpoint')
ANY_MODEL = 'pass a .pth or .safetensors model'
PTH = 'pass a .pth checkpoint'



def tiny_runner(work_dir, model=None, **kwargs):
    """A CPU Runner on the tiny regression model, with mmpcm's hooks."""
    return Runner(
        model=model or TinyRegressionModel(),
        work_dir=str(work_dir),
        experiment_name=f'files_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=TinyRegressionDataset(4),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        custom_hooks=[dict(type='PCMCheckpointFitHook')],
        default_scope='mmpretrain',
        **kwargs)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A real checkpoint (one epoch of a tiny Runner) and broken or foreign
    files, by name."""
    root = tmp_path_factory.mktemp('files')
    tiny_runner(root / 'run').train()
    good = root / 'run' / 'epoch_1.pth'
    data = good.read_bytes()
    paths = dict(good=good)
    paths['truncated'] = root / 'ckpt.pth'
    paths['truncated'].write_bytes(data[:len(data) * 2 // 3])
    legacy = root / 'legacy.pth'
    torch.save(torch.load(good, weights_only=False), legacy,
               _use_new_zipfile_serialization=False)
    paths['legacy'] = legacy
    paths['legacy_truncated'] = root / 'legacy_cut.pth'
    paths['legacy_truncated'].write_bytes(legacy.read_bytes()[:600])
    paths['jpeg'] = root / 'photo.jpg'
    Image.new('RGB', (8, 8), 'red').save(paths['jpeg'])
    paths['png'] = root / 'chart.pth'  # a PNG, whatever its name says
    Image.new('RGB', (8, 8)).save(paths['png'], format='PNG')
    paths['json'] = root / 'metrics.json'
    paths['json'].write_text('{"coco-caption/CIDEr": 91.2}')
    paths['vocab'] = root / 'vocab.json'
    WordVocabulary.from_captions(['a dog on the grass'],
                                 min_count=1).save(str(paths['vocab']))
    paths['text'] = root / 'notes.txt'
    paths['text'].write_text('epoch 12 was the best\n')
    paths['config'] = root / 'pcm_smoke.py'
    shutil.copy(SMOKE, paths['config'])
    paths['empty'] = root / 'empty.pth'
    paths['empty'].write_bytes(b'')
    paths['folder'] = root / 'folder'
    paths['folder'].mkdir()
    paths['missing'] = root / 'nothing.pth'
    return paths


# name -> (problem, remedy where .pth or .safetensors are taken, remedy where
# only .pth is): the one line is '<file>: <problem>; <remedy>'.
EXPECTED = {
    'truncated': ('truncated torch checkpoint (zip archive without its end)',
                  INTERRUPTED, INTERRUPTED),
    'legacy_truncated': ('truncated torch checkpoint (legacy format, the data '
                         'ends early)', INTERRUPTED, INTERRUPTED),
    'jpeg': ('a JPEG image, not a checkpoint', ANY_MODEL, PTH),
    'png': ('a PNG image, not a checkpoint', ANY_MODEL, PTH),
    'json': ('a JSON file, not a checkpoint', ANY_MODEL, PTH),
    'vocab': ('a JSON list of 9 words (a vocabulary?), not a checkpoint',
              ANY_MODEL, PTH),
    'text': ('a text file, not a checkpoint', ANY_MODEL, PTH),
    'config': ('a Python file (a config?), not a checkpoint', ANY_MODEL, PTH),
    'empty': ('an empty file (0 bytes), not a checkpoint', INTERRUPTED,
              INTERRUPTED),
    'folder': ('a folder, not a checkpoint file',
               'pass a checkpoint file (.pth or .safetensors)',
               'pass a checkpoint file (.pth)'),
    'missing': ('no such file', 'check the path', 'check the path'),
}


def line_of(call):
    """The one error line run_tool would print for what ``call`` raises."""
    with pytest.raises(Exception) as info:
        call()
    line, actionable = error_line(info.value)
    assert actionable and '\n' not in line
    return info.value, line


def test_a_real_checkpoint_and_its_legacy_copy_load(files):
    for name in ('good', 'legacy'):
        assert describe_checkpoint_file(files[name]).kind == TORCH
        assert load_checkpoint_file(str(files[name]))['meta']['epoch'] == 1
    assert describe_checkpoint_file(files['legacy']).legacy


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_load_checkpoint_file(files, name):
    """mmpcm's safe loader (and the trusted one): never 'untrusted'."""
    problem, _, remedy = EXPECTED[name]
    path = str(files[name])
    for load in (load_checkpoint_file, load_trusted_checkpoint):
        error, line = line_of(lambda: load(path))
        assert line == f'{path}: {problem}; {remedy}'
        assert isinstance(error, InputError)
        assert not isinstance(error, UntrustedCheckpointError)
    assert isinstance(error, MissingInputError) == (name == 'missing')
    assert isinstance(error, FileNotFoundError) == (name == 'missing')


@pytest.mark.parametrize('name', sorted(EXPECTED))
@pytest.mark.parametrize('resume', [False, True])
def test_runner_load_from_and_resume(files, tmp_path, name, resume):
    """mmengine's Runner (load_from, --resume FILE), as tools/train.py and
    tools/test.py load, through CheckpointLoader's local scheme."""
    problem, _, remedy = EXPECTED[name]
    path = str(files[name])
    runner = tiny_runner(tmp_path, load_from=path, resume=resume)
    _, line = line_of(runner.load_or_resume)
    assert line == f'{path}: {problem}; {remedy}'


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_model_source_and_inferencer(files, name):
    """load_model_source (tools/caption.py and the inferencer) and
    apply_checkpoint_to_cfg (tools/test.py): .pth or .safetensors."""
    problem, remedy, _ = EXPECTED[name]
    path = str(files[name])
    if name != 'folder':  # the inferencer resolves folders as work dirs
        for call in (lambda: load_model_source(path),
                     lambda: PCMCaptionInferencer(path, device='cpu'),
                     lambda: apply_checkpoint_to_cfg(Config(), path)):
            _, line = line_of(call)
            assert line == f'{path}: {problem}; {remedy}'
    else:
        _, line = line_of(lambda: load_model_source(path))
        assert line == f'{path}: {problem}; {remedy}'


def test_a_folder_that_is_no_work_dir(files, tmp_path):
    folder = str(files['folder'])
    expected = (f'{folder}: a folder with no checkpoint (.pth) in it, not the '
                'work dir of a training run; train the config first, or pass '
                'a checkpoint file (.pth or .safetensors)')
    for call in (lambda: resolve_checkpoint(folder),
                 lambda: PCMCaptionInferencer(folder, device='cpu')):
        error, line = line_of(call)
        assert isinstance(error, CheckpointNotFoundError)
        assert line == expected
    releases = tmp_path / 'releases'
    releases.mkdir()
    (releases / 'pcm_coco.safetensors').write_bytes(b'')
    with pytest.raises(CheckpointNotFoundError, match=(
            r'not the work dir of a training run; pass one of its model '
            r'files \(pcm_coco.safetensors\)$')):
        resolve_checkpoint(releases)
    # A work dir given to a loader directly: its checkpoints are named.
    run = str(files['good'].parent)
    _, line = line_of(lambda: load_checkpoint_file(run))
    assert line == (f'{run}: a folder, not a checkpoint file; pass one of the '
                    'checkpoint files in it (epoch_1.pth)')


def test_a_release_where_a_training_checkpoint_goes(captioner, tmp_path):
    _, ckpt, _ = captioner
    release = str(tmp_path / 'pcm.safetensors')
    publish_release(ckpt, release)
    assert describe_checkpoint_file(release).kind == SAFETENSORS
    _, line = line_of(lambda: load_checkpoint_file(release))
    assert line == (
        f'{release}: a safetensors file (an mmpcm release), not a training '
        'checkpoint (.pth); tools/test.py and tools/caption.py take a release '
        'as it is; loading weights into a training run (load_from, --resume) '
        'needs a .pth checkpoint')
    cut = tmp_path / 'cut.safetensors'
    data = open(release, 'rb').read()
    cut.write_bytes(data[:len(data) - 100])
    _, line = line_of(lambda: load_model_source(str(cut)))
    assert line.startswith(f'{cut}: truncated safetensors file (its tensors '
                           f'end at byte {len(data)}, the file has '
                           f'{len(data) - 100}); the file is incomplete')
    # A JPEG with a release's name is still a JPEG.
    fake = tmp_path / 'fake.safetensors'
    Image.new('RGB', (8, 8)).save(fake, format='JPEG')
    _, line = line_of(lambda: read_release_info(str(fake)))
    assert line == (f'{fake}: a JPEG image, not a checkpoint; pass a '
                    '.safetensors release')


def test_a_pickle_payload_in_a_legacy_checkpoint_is_still_untrusted(
        tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:

        def __reduce__(self):
            return os.system, (f'touch {marker}', )

    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, extra=Payload()), evil,
               _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError, match='load_trusted'):
        load_checkpoint_file(str(evil))
    assert not marker.exists()


# --------------------------------------------------------------------------
# a config that does not fit the checkpoint
# --------------------------------------------------------------------------
class WiderRegressionModel(TinyRegressionModel):
    """The tiny model with three inputs and an extra layer."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        self.scale = torch.nn.Linear(1, 1)


def test_runner_refuses_a_checkpoint_of_another_model(files, tmp_path):
    ckpt = str(files['good'])
    runner = tiny_runner(tmp_path, model=WiderRegressionModel(),
                         load_from=ckpt)
    error, line = line_of(runner.load_or_resume)
    assert isinstance(error, ConfigMismatchError)
    assert line == (
        f'{ckpt}: does not fit the config: 1 tensor differs in shape (first: '
        'linear.weight [1, 2] in the checkpoint vs [1, 3] in the model), 2 '
        'tensors of the model missing from the checkpoint (first: '
        'scale.weight); pass the config the checkpoint was trained with')


@pytest.fixture(scope='module')
def captioner(tmp_path_factory):
    """A tiny captioner checkpoint with its config inside, and that config
    as a file."""
    root = tmp_path_factory.mktemp('captioner')
    concepts = str(root / 'concepts.safetensors')
    random_concepts(['ball', 'dog', 'cat', 'grass']).save(concepts)
    cfg = tiny_captioner_cfg(WordVocabulary.from_captions(
        ['a dog on the grass', 'a cat with a ball'], min_count=1).words,
                             concepts)
    model = MODELS.build(cfg)
    ckpt = str(root / 'epoch_12.pth')
    torch.save(dict(meta=dict(cfg=Config(dict(model=cfg)).pretty_text),
                    state_dict=model.state_dict()), ckpt)
    return cfg, ckpt, root


def test_build_captioner_with_a_config_of_another_size(captioner):
    cfg, ckpt, root = captioner
    wider = Config(dict(model=cfg))
    wider.model.encoder.ffn_dim = 96
    other = str(root / 'pcm_wider.py')
    wider.dump(other)
    error, line = line_of(lambda: build_captioner(ckpt, other, 'cpu'))
    assert isinstance(error, ConfigMismatchError)
    assert line == (
        f'{ckpt}: does not fit {other}: 3 tensors differ in shape (first: '
        'encoder.layers.0.linear1.weight [64, 32] in the checkpoint vs '
        '[96, 32] in the model); pass the config the checkpoint was trained '
        'with')
    build_captioner(ckpt, None, 'cpu')  # its own config fits


@pytest.fixture(scope='module')
def smoke_checkpoint(tmp_path_factory):
    """One epoch of the smoke config, in process, as tools/train.py runs."""
    cwd = tmp_path_factory.mktemp('smoke')
    write_smoke_data(str(cwd / 'data' / 'smoke'))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        cfg = Config.fromfile(SMOKE)
        cfg.work_dir = str(cwd / 'train')
        cfg.train_cfg.max_epochs = 1
        cfg.default_hooks.checkpoint.interval = 1
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        Runner.from_cfg(prepare_cfg(cfg)).train()
    return cwd, str(cwd / 'train' / 'epoch_1.pth')


def test_test_path_with_a_config_that_does_not_fit(smoke_checkpoint,
                                                   monkeypatch):
    """tools/test.py's path (apply_checkpoint_to_cfg, prepare_cfg, the
    Runner's load_from) with a config of another model size."""
    cwd, ckpt = smoke_checkpoint
    monkeypatch.chdir(cwd)
    cfg = Config.fromfile(SMOKE)
    cfg.work_dir = str(cwd / 'test')
    cfg.model.encoder.ffn_dim = 96
    runner = Runner.from_cfg(prepare_cfg(apply_checkpoint_to_cfg(cfg, ckpt)))
    error, line = line_of(runner.load_or_resume)
    assert isinstance(error, ConfigMismatchError)
    assert line == (
        f'{ckpt}: does not fit {SMOKE}: 3 tensors differ in shape (first: '
        'encoder.layers.0.linear1.weight [128, 64] in the checkpoint vs '
        '[96, 64] in the model); pass the config the checkpoint was trained '
        'with')
    # The config it was trained with loads.
    cfg = Config.fromfile(SMOKE)
    cfg.work_dir = str(cwd / 'test_ok')
    cfg = prepare_cfg(apply_checkpoint_to_cfg(cfg, ckpt))
    Runner.from_cfg(cfg).load_or_resume()
