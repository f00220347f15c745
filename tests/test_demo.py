"""tools/demo/caption_demo.py: the caption function against the inferencer,
the refusal of non-images, the page built without launching, the tool's
defaults and its one-line errors."""
import math
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmpcm.apis import PCMCaptionInferencer
from mmpcm.testing import build_tiny_captioner

from tool_loader import load_tool

CAPTIONS = ['a red ball on the green grass', 'two dogs play in the snow',
            'a man rides a horse on the beach', 'a cat sleeps on a sofa']

demo_tool = load_tool('demo/caption_demo')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny random captioner's checkpoint, two images and a text file."""
    root = tmp_path_factory.mktemp('demo')
    ckpt = build_tiny_captioner(
        str(root), CAPTIONS,
        ['ball', 'dog', 'man', 'horse', 'cat', 'sofa']).checkpoint
    images = root / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in [('a.png', (40, 50)), ('b.jpg', (64, 48))]:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                        ).save(images / name)
    (root / 'notes.txt').write_text('not an image')
    return ckpt, images, root


@pytest.fixture(scope='module')
def inferencer(setup):
    ckpt, _, _ = setup
    return PCMCaptionInferencer(ckpt, device='cpu', beam_size=3)


def test_caption_is_the_inferencers(inferencer, setup):
    """Same caption and score as the inferencer for the same file; the
    caption heads the alternatives (falling scores); the picture is the
    concept drawing of the inferencer's own concept view."""
    _, images, _ = setup
    reference = PCMCaptionInferencer(inferencer.model, beam_size=3,
                                     return_concepts=True)
    for path in sorted(images.iterdir()):
        got = demo_tool.caption_upload(inferencer, str(path))
        want = reference(str(path))[0]
        assert got.error is None
        assert got.caption == want['caption']
        assert got.score == pytest.approx(want['score'], abs=1e-5)
        assert got.alternatives[0] == (got.caption, got.score)
        assert len(got.alternatives) == 3
        scores = [s for _, s in got.alternatives]
        assert scores == sorted(scores, reverse=True)
        assert got.picture.size == (demo_tool.PICTURE_SIZE,) * 2
        view = want['concepts']
        assert [row[:3] for row in got.concepts] == [
            [c['word'], c['prob'], c['kept']] for c in view['concepts']]
        assert sum(row[3] for row in got.concepts) == len(view['patches'])


def test_greedy_has_one_alternative(inferencer, setup):
    _, images, _ = setup
    greedy = PCMCaptionInferencer(inferencer.model, beam_size=1)
    got = demo_tool.caption_upload(greedy, str(images / 'a.png'))
    assert got.alternatives == [(got.caption, got.score)]
    assert got.caption == greedy(str(images / 'a.png'))[0]['caption']


def test_non_image_upload_gets_the_message(inferencer, setup):
    _, _, root = setup
    got = demo_tool.caption_upload(inferencer, str(root / 'notes.txt'))
    assert got.caption is None and got.picture is None
    assert got.error == ('notes.txt: not an image file (unknown or '
                         f'unsupported format); '
                         f'{demo_tool.NOT_AN_IMAGE_REMEDY}')
    # the page shows it in the status line and clears the results
    status, caption, picture, table, concepts = demo_tool.page_outputs(got)
    assert 'not an image file' in status and 'notes.txt' in status
    assert (caption, picture, table, concepts) == ('', None, [], '')
    # a truncated image and no file at all are messages too
    data = (setup[1] / 'b.jpg').read_bytes()
    (root / 'cut.jpg').write_bytes(data[:len(data) // 2])
    cut = demo_tool.caption_upload(inferencer, str(root / 'cut.jpg'),
                                   name='holiday.jpg')
    assert cut.error.startswith('holiday.jpg: truncated or corrupt image')
    assert demo_tool.caption_upload(inferencer, None).error.startswith(
        'no file chosen')


def test_page_outputs_of_a_caption(inferencer, setup):
    _, images, _ = setup
    got = demo_tool.caption_upload(inferencer, str(images / 'a.png'))
    status, caption, picture, table, concepts = demo_tool.page_outputs(got)
    assert caption == got.caption and picture is got.picture
    assert f'{got.score:.3f}' in status
    assert [row[1] for row in table] == [c for c, _ in got.alternatives]
    assert [row[0] for row in table] == [1, 2, 3]
    assert all(row[0] in concepts for row in got.concepts)
    assert math.isfinite(table[-1][2])


def test_build_demo_without_launching(inferencer, setup):
    import gradio as gr
    _, images, _ = setup
    examples = demo_tool.find_examples([str(images)], limit=24)
    assert [osp.basename(f) for f in examples] == ['a.png', 'b.jpg']
    demo = demo_tool.build_demo(inferencer, examples)
    assert isinstance(demo, gr.Blocks)
    kinds = {type(block).__name__ for block in demo.blocks.values()}
    assert {'File', 'Gallery', 'Image', 'Dataframe', 'Textbox'} <= kinds
    # upload, clearing and example picking are wired
    assert {fn.name for fn in demo.fns.values()} >= {'on_upload', 'on_pick'}
    assert not demo.is_running


def test_defaults_bind_to_localhost():
    args = demo_tool.parse_args(['model.safetensors'])
    assert args.host == '127.0.0.1'
    assert args.port == 7860
    assert args.beam_size is None and args.examples == []


def test_tool_errors_are_one_line(setup, tmp_path, capsys):
    """A missing model or example folder: one line, exit 1, no server."""
    ckpt, _, _ = setup
    assert demo_tool.main([str(tmp_path / 'missing.pth')]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and len(err.splitlines()) == 1
    assert 'missing.pth' in err
    assert demo_tool.main([ckpt, '--examples', str(tmp_path / 'nope')]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f'error: {tmp_path / "nope"}: no such file or folder; '
                   'check the --examples path')


def test_missing_gradio_is_one_line(setup, monkeypatch, capsys):
    import sys
    ckpt, _, _ = setup
    monkeypatch.setitem(sys.modules, 'gradio', None)  # import fails
    assert demo_tool.main([ckpt]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ('error: gradio: not installed (the caption demo needs '
                   'it); pip install gradio')


def test_model_from_a_work_dir(setup, tmp_path):
    """A work dir: its best checkpoint; without any best one (trained
    without validation, as the toy world is), the one last_checkpoint
    names; nothing to go by is the resolver's error."""
    import shutil

    from mmpcm.apis.best_checkpoint import CheckpointNotFoundError
    ckpt, _, _ = setup
    run = tmp_path / 'run'
    run.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        shutil.copy(ckpt, run / name)
    with pytest.raises(CheckpointNotFoundError):  # no last_checkpoint
        demo_tool.resolve_model(str(run))
    (run / 'last_checkpoint').write_text(str(run / 'epoch_2.pth'))
    path, line = demo_tool.resolve_model(str(run))
    assert path == str(run / 'epoch_2.pth')
    assert 'last one written' in line
    best = run / 'best_coco-caption_CIDEr_epoch_1.pth'
    shutil.copy(ckpt, best)
    path, line = demo_tool.resolve_model(str(run))
    assert path == str(best) and 'best' in line
    best.rename(run / 'best_coco-caption_Bleu_4_epoch_1.pth')
    with pytest.raises(CheckpointNotFoundError):  # another metric's best
        demo_tool.resolve_model(str(run))
    assert demo_tool.resolve_model(ckpt) == (ckpt, None)


def test_a_port_in_use_is_one_line(setup, capsys):
    import socket
    ckpt = setup[0]
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert demo_tool.main([ckpt, '--port', str(port),
                               '--device', 'cpu']) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f'error: 127.0.0.1:{port}: the port is in use (or cannot be bound); '
        'pass another --port')
