"""A demo page for a trained PCM-Net: upload or pick an image, see its
caption, the beam search's other sentences with their scores, and PCM's
concept picture.

    python tools/demo/caption_demo.py MODEL [--examples DIR_OR_FILES ...]

MODEL is a release (.safetensors), a training checkpoint (.pth) or a
training work dir (its best checkpoint by validation CIDEr, as for
tools/caption.py; the checkpoint its ``last_checkpoint`` names when the run
kept no best one, as the toy world's quick start, trained without
validation, does: ``work_dirs/pcm_toyworld``). The page is served by Gradio on http://127.0.0.1:7860
(``--host``/``--port``): this machine only, unless ``--host 0.0.0.0`` is
asked for. Nothing is fetched from the internet, at start or when the page
is viewed: Gradio's analytics are off and its page, scripts and fonts are
served from the installed package. A file that is not an image is refused
with a message on the page. Errors at start (a missing model, no gradio)
are one line on stderr and exit status 1; the traceback with --debug. See
docs/demo.md.
"""
import argparse
import html
import math
import os
import os.path as osp
import sys
from typing import List, NamedTuple, Optional, Sequence, Tuple

# Before gradio is imported: it reads this at import time.
os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'

from mmpcm.utils.cli import (InputError, MissingInputError, add_debug_flag,
                             run_tool)

PICTURE_SIZE = 448  # side of the concept picture on the page, in pixels
MAX_UPLOAD = '50mb'
READY = 'Upload an image or pick an example.'
NOT_AN_IMAGE_REMEDY = ('upload an image file (JPEG, PNG, WebP, BMP, GIF or '
                       'TIFF)')


class DemoResult(NamedTuple):
    """What the page shows for one upload.

    Attributes:
        caption (str, optional): The caption (the inferencer's).
        score (float, optional): Its log-probability.
        alternatives (list[tuple[str, float]]): Every final beam, best
            first (the caption is the first), as ``(caption,
            log-probability)``; one entry with greedy decoding.
        picture (PIL.Image.Image, optional): The square CLIP saw with the
            selected patches outlined and labelled with their concept words.
        concepts (list[list]): Rows ``[word, probability, kept, patches,
            colour]``: PCM's retrieved concepts, best first, whether each
            passed the threshold, how many selected patches took it and its
            outline colour in the picture.
        error (str, optional): Why the upload was refused (no other field
            is set then).
    """
    caption: Optional[str] = None
    score: Optional[float] = None
    alternatives: List[Tuple[str, float]] = []
    picture: Optional[object] = None
    concepts: List[list] = []
    error: Optional[str] = None


def caption_image(inferencer, image) -> Tuple[list, object]:
    """Caption one image: every final beam and PCM's concept view.

    One pass through the model, as
    :meth:`PCMCaptionInferencer.caption_tensors
    <mmpcm.apis.PCMCaptionInferencer.caption_tensors>` does it (same
    preprocessing, same beam size), but keeping every beam
    (:meth:`PCMCaptionHead.predict_beams
    <mmpcm.models.heads.PCMCaptionHead.predict_beams>`, whose first beam is
    the caption ``predict`` gives).

    Args:
        inferencer (PCMCaptionInferencer): The model.
        image (PIL.Image.Image): RGB (:func:`~mmpcm.datasets.transforms.
            load_image`).

    Returns:
        tuple: ``[(caption, log-probability), ...]`` best first, and the
        :class:`~mmpcm.visualization.ConceptView`.
    """
    import torch

    from mmpcm.datasets.clip_transforms import CLIPImageTransform
    from mmpcm.visualization import concept_view

    model = inferencer.model
    pixels = CLIPImageTransform(inferencer.preprocess_cfg)(image)[None]
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=dict(images=pixels), data_samples=None), False)
        feats = model.extract_feat(data['inputs'])
        enc = model.encode(feats)
        beams = model.head.predict_beams(enc.memory, enc.padding_mask,
                                         inferencer.beam_size)
        picture = model.explain(feats)
    alternatives = model.head.decode_beams_text(beams)[0]
    view = concept_view({name: value[0].cpu()
                         for name, value in picture._asdict().items()},
                        model.neck.concept_words)
    return alternatives, view


def concept_rows(view) -> List[list]:
    """``[word, probability, kept, patches, colour]`` per concept of
    ``view``, best first."""
    from mmpcm.visualization import concept_colours
    colours = concept_colours(view)
    return [[c['word'], c['prob'], c['kept'],
             sum(p['concept'] == c['word'] for p in view.patches),
             colours[c['word']]] for c in view.concepts]


def caption_upload(inferencer, file_path: Optional[str],
                   name: Optional[str] = None,
                   picture_size: int = PICTURE_SIZE) -> DemoResult:
    """What the page shows for an uploaded (or picked) file.

    Args:
        inferencer (PCMCaptionInferencer): The model.
        file_path (str, optional): The file, any type (None: nothing
            chosen yet).
        name (str, optional): The name to show in a message (an upload's
            own name, not Gradio's copy). Defaults to the file's name.
        picture_size (int): Side of the concept picture in pixels.

    Returns:
        DemoResult: The caption, its alternatives, picture and concepts;
        or only ``error`` for a file that is not a readable image.
    """
    from mmpcm.datasets.transforms import ImageLoadError, load_image
    from mmpcm.visualization import clip_view, draw_concept_picture

    if not file_path:
        return DemoResult(error='no file chosen; upload an image or pick '
                          'an example')
    name = name or osp.basename(file_path)
    try:
        image = load_image(file_path)
    except ImageLoadError as error:
        return DemoResult(error=f'{name}: {error.reason}; '
                          f'{NOT_AN_IMAGE_REMEDY}')
    alternatives, view = caption_image(inferencer, image)
    caption, score = alternatives[0]
    picture = draw_concept_picture(
        clip_view(image, inferencer.preprocess_cfg, picture_size), view)
    return DemoResult(caption, score, alternatives, picture,
                      concept_rows(view))


# ------------------------------------------------------------------ page
def status_markdown(result: DemoResult) -> str:
    """The line above the results: the refusal, or the caption's score."""
    if result.error is not None:
        return f'**Not captioned.** {html.escape(result.error)}'
    return (f'log-probability {result.score:.3f} '
            f'(per-sentence probability {math.exp(result.score):.3g})')


def concepts_html(rows: Sequence[list]) -> str:
    """The concept legend: each word in its outline colour."""
    if not rows:
        return ('<p>No concepts: this model runs without PCM\'s concept '
                'mix-up (the visual baseline).</p>')
    items = []
    for word, prob, kept, patches, colour in rows:
        state = 'kept' if kept else 'below threshold'
        where = (f'{patches} patch{"es" if patches != 1 else ""}'
                 if patches else 'no patch')
        items.append(
            f'<li style="opacity:{1 if kept else 0.55}">'
            f'<span style="display:inline-block;width:0.9em;height:0.9em;'
            f'border:3px solid {colour};margin-right:0.4em;'
            f'vertical-align:middle"></span>'
            f'<b>{html.escape(word)}</b> &nbsp; p={prob:.3f} &middot; '
            f'{state} &middot; {where}</li>')
    return ('<ul style="list-style:none;padding-left:0;margin:0">'
            + ''.join(items) + '</ul>')


def page_outputs(result: DemoResult) -> tuple:
    """``(status, caption, picture, alternatives, concepts)`` for the page's
    components."""
    if result.error is not None:
        return status_markdown(result), '', None, [], ''
    table = [[rank, text, round(score, 3)]
             for rank, (text, score) in enumerate(result.alternatives, 1)]
    return (status_markdown(result), result.caption, result.picture, table,
            concepts_html(result.concepts))


def build_demo(inferencer, examples: Sequence[str] = (),
               title: str = 'PCM-Net captioning'):
    """The page, built but not launched.

    Args:
        inferencer (PCMCaptionInferencer): The model.
        examples (Sequence[str]): Image files to pick from.
        title (str): Page title.

    Returns:
        gradio.Blocks: The page.
    """
    from mmpcm.utils.deps import require_package
    gr = require_package('gradio', 'the caption demo')

    examples = list(examples)
    model_name = (osp.basename(inferencer.model_file)
                  if inferencer.model_file else 'a built model')
    beam = inferencer.beam_size or inferencer.model.head.beam_size

    def show(path: Optional[str], name: Optional[str] = None) -> tuple:
        return page_outputs(caption_upload(inferencer, path, name))

    def on_upload(path: Optional[str]) -> tuple:
        return show(path)

    def on_pick(evt: gr.SelectData) -> tuple:
        return show(examples[evt.index])

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f'## {html.escape(title)}\n'
            f'Model: `{html.escape(model_name)}` · beam size {beam}. '
            'Upload an image or pick an example: the caption, the other '
            'sentences the beam search ended with, and PCM\'s picture '
            '(the square CLIP sees, the patches PCM selected outlined in '
            'the colour of the concept each takes).')
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label='Image (any file; non-images are '
                                 'refused)', file_count='single',
                                 type='filepath', height=120)
                if examples:
                    gallery = gr.Gallery(
                        value=examples, label='Examples (click to caption)',
                        columns=4, height=360, allow_preview=False,
                        object_fit='contain')
            with gr.Column(scale=3):
                status = gr.Markdown(READY)
                caption = gr.Textbox(label='Caption', interactive=False,
                                     lines=1)
                with gr.Row(equal_height=False):
                    picture = gr.Image(label='PCM\'s concept picture',
                                       type='pil', interactive=False,
                                       format='png', scale=3)
                    concepts = gr.HTML(label='Concepts', scale=2)
                alternatives = gr.Dataframe(
                    headers=['#', 'beam', 'log-prob'],
                    datatype=['number', 'str', 'number'],
                    label='Beam alternatives (best first)',
                    interactive=False, wrap=True,
                    column_widths=['8%', '74%', '18%'])
        outputs = [status, caption, picture, alternatives, concepts]
        upload.upload(on_upload, inputs=upload, outputs=outputs)
        upload.clear(lambda: (READY, '', None, [], ''), inputs=None,
                     outputs=outputs)
        if examples:
            gallery.select(on_pick, inputs=None, outputs=outputs)
    return demo


# ------------------------------------------------------------------ tool
def find_examples(entries: Sequence[str], limit: int) -> List[str]:
    """Image files from ``--examples``: files as given, folders scanned for
    images (sorted), the first ``limit`` in all.

    Raises:
        MissingInputError: For an entry that does not exist.
        InputError: If the entries hold no image.
    """
    from mmpcm.datasets.image_lists import scan_folder
    files: List[str] = []
    for entry in entries:
        if osp.isdir(entry):
            files += [osp.join(entry, rel)
                      for rel in scan_folder(entry).files]
        elif osp.isfile(entry):
            files.append(entry)
        else:
            raise MissingInputError(entry, 'no such file or folder',
                                    'check the --examples path')
    if entries and not files:
        raise InputError(', '.join(entries), 'no image files found',
                         'pass image files or a folder holding images to '
                         '--examples')
    return [osp.abspath(f) for f in files[:limit]]


def resolve_model(model: str):
    """MODEL as a file
    (:func:`~mmpcm.apis.best_checkpoint.resolve_checkpoint_or_last`).

    Returns:
        tuple[str, str | None]: The file, and a line naming it for stderr
        (None for a file given as such).
    """
    from mmpcm.apis.best_checkpoint import resolve_checkpoint_or_last
    found = resolve_checkpoint_or_last(model)
    return found.path, (found.describe() if found.work_dir is not None
                        else None)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='A demo page: caption uploaded images with PCM-Net')
    parser.add_argument('model', help='release (.safetensors), training '
                        'checkpoint (.pth), or work dir (its best checkpoint '
                        'by validation CIDEr, or its last one for a run '
                        'without validation)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default: 127.0.0.1, '
                        'this machine only; 0.0.0.0 opens it to the '
                        'network)')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--config', help='training config, for a .pth '
                        'without one inside')
    parser.add_argument('--device', help='e.g. cuda:0 (default: CUDA when '
                        'available, else CPU)')
    parser.add_argument('--beam-size', type=int,
                        help='override the model\'s beam size (1: greedy, '
                        'no alternatives)')
    parser.add_argument('--examples', nargs='+', default=[],
                        metavar='DIR_OR_FILE',
                        help='images to pick from: files or folders')
    parser.add_argument('--max-examples', type=int, default=24,
                        help='show at most this many examples (default 24)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    from mmpcm.utils.deps import require_package
    require_package('gradio', 'the caption demo')  # before the model loads
    if args.beam_size is not None and args.beam_size < 1:
        raise InputError('--beam-size', f'{args.beam_size} is not a beam '
                         'size', 'give 1 or more')
    examples = find_examples(args.examples, args.max_examples)

    # Fixes and registries before mmpcm.apis loads; it builds the model in
    # mmpretrain's scope.
    from mmpcm.setup_env import register_all_modules
    register_all_modules(init_default_scope=False)
    from mmpcm.apis import PCMCaptionInferencer

    model_file, described = resolve_model(args.model)
    if described is not None:
        print(described, file=sys.stderr)
    inferencer = PCMCaptionInferencer(model_file, args.config, args.device,
                                      args.beam_size)
    demo = build_demo(inferencer, examples)
    try:
        demo.launch(server_name=args.host, server_port=args.port,
                    share=False, inbrowser=False, ssr_mode=False,
                    mcp_server=False, max_file_size=MAX_UPLOAD,
                    allowed_paths=sorted({osp.dirname(f) for f in examples}))
    except OSError as err:
        if 'port' not in str(err).lower():
            raise
        raise InputError(f'{args.host}:{args.port}', 'the port is in use '
                         '(or cannot be bound)', 'pass another --port') from None
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Serve the demo; an error at start is one line on stderr."""
    return run_tool(serve, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
