"""A static HTML gallery of captioned images (``tools/test.py --show-dir``,
``tools/caption.py --show-dir``).

One self-contained ``index.html`` (inline style and script, no network at
view time) beside a ``thumbs/`` folder of small JPEGs, one per image: CLIP's
view of the image, with PCM's selected patches outlined in the page
(toggle). Per image: the prediction (hallucinated object words marked), the
references, per-image scores, and the retrieved concepts with their
probabilities. Entries are written in the page (it parses without
scripts); the script pages, sorts and filters them, and thumbnails load
lazily, so 5,000 images open at once.
"""
import html
import json
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from mmpcm.datasets.clip_transforms import PreprocessCfg
from mmpcm.datasets.transforms import ImageLoadError, load_image
from mmpcm.utils.fileio import atomic_write, atomic_write_text
from .concepts import ConceptView
from .drawing import clip_view, concept_colours

__all__ = ['GalleryEntry', 'GalleryHeader', 'write_gallery',
           'GALLERY_FILE', 'THUMBS_DIR']

GALLERY_FILE = 'index.html'
THUMBS_DIR = 'thumbs'


@dataclass
class GalleryEntry:
    """One captioned image.

    Attributes:
        image_id (str): The image's id.
        caption (str): The predicted caption.
        image_path (str, optional): The image file (None: no thumbnail).
        references (list[str]): Reference captions.
        scores (dict[str, float]): Per-image scores by name (e.g.
            ``'CIDEr'``, ``'CLIP-S'``; the scale of the metric table).
        words (list[str], optional): The caption's words, when
            ``hallucinated`` marks some of them.
        hallucinated (set[int]): Positions in ``words`` of object words
            naming an object that is not in the image.
        hallucinated_objects (list[str]): Those objects' names.
        concepts (ConceptView, optional): PCM's concepts and patches.
    """
    image_id: str
    caption: str
    image_path: Optional[str] = None
    references: List[str] = field(default_factory=list)
    scores: Dict[str, float] = field(default_factory=dict)
    words: Optional[List[str]] = None
    hallucinated: Set[int] = field(default_factory=set)
    hallucinated_objects: List[str] = field(default_factory=list)
    concepts: Optional[ConceptView] = None


@dataclass
class GalleryHeader:
    """What the page says about the run.

    Attributes:
        title (str): Page title (e.g. the config name).
        config (str, optional): The config file.
        checkpoint (str, optional): The model file.
        metrics (dict[str, float]): The run's metric table.
    """
    title: str
    config: Optional[str] = None
    checkpoint: Optional[str] = None
    metrics: Dict[str, float] = field(default_factory=dict)


def _thumbnail(entry: GalleryEntry, index: int, out_dir: str,
               preprocess_cfg: Union[int, PreprocessCfg, dict],
               size: int) -> Tuple[Optional[str], Optional[str]]:
    """Write one thumbnail; returns (relative path, problem)."""
    if entry.image_path is None:
        return None, 'no image file'
    try:
        image = load_image(entry.image_path)
    except (ImageLoadError, OSError) as err:
        return None, str(err)
    rel = f'{THUMBS_DIR}/{index:06d}.jpg'
    view = clip_view(image, preprocess_cfg, size)
    atomic_write(osp.join(out_dir, rel),
                 lambda f: view.save(f, format='JPEG', quality=88))
    return rel, None


def _caption_html(entry: GalleryEntry) -> str:
    if entry.words is None or not entry.hallucinated:
        return html.escape(entry.caption)
    return ' '.join(
        f'<mark title="not in the image">{html.escape(w)}</mark>'
        if i in entry.hallucinated else html.escape(w)
        for i, w in enumerate(entry.words))


def _patches_html(view: ConceptView) -> str:
    colours = concept_colours(view)
    cell = 100.0 / view.grid
    boxes = []
    for p in view.patches:
        colour = colours.get(p['concept'], '#ffffff')
        boxes.append(
            f'<div class="patch" style="left:{p["col"] * cell:.4f}%;'
            f'top:{p["row"] * cell:.4f}%;width:{cell:.4f}%;'
            f'height:{cell:.4f}%;border-color:{colour}" '
            f'title="{html.escape(p["concept"])} '
            f'({p["similarity"]:.2f})"><span style="color:{colour}">'
            f'{html.escape(p["concept"])}</span></div>')
    return ''.join(boxes)


def _concepts_html(view: ConceptView) -> str:
    colours = concept_colours(view)
    chips = []
    for c in view.concepts:
        cls = 'chip' if c['kept'] else 'chip masked'
        chips.append(
            f'<span class="{cls}" style="border-color:'
            f'{colours[c["word"]]}" data-word="{html.escape(c["word"])}">'
            f'{html.escape(c["word"])} {c["prob"]:.2f}</span>')
    return ''.join(chips)


def _entry_html(entry: GalleryEntry, thumb: Optional[str],
                problem: Optional[str], size: int) -> str:
    data = ' '.join(
        f'data-score-{_slug(k)}="{v:.4f}"' for k, v in entry.scores.items())
    picture = (f'<img src="{thumb}" loading="lazy" width="{size}" '
               f'height="{size}" alt="{html.escape(entry.image_id)}">'
               if thumb else
               f'<div class="noimg">{html.escape(problem or "")}</div>')
    if thumb and entry.concepts is not None:
        picture += f'<div class="patches">{_patches_html(entry.concepts)}</div>'
    scores = ''.join(
        f'<span class="score">{html.escape(k)} {v:.1f}</span>'
        for k, v in entry.scores.items())
    halluc = ''
    if entry.hallucinated_objects:
        halluc = ('<div class="halluc">not in the image: ' +
                  html.escape(', '.join(entry.hallucinated_objects)) +
                  '</div>')
    refs = ''.join(f'<li>{html.escape(r)}</li>' for r in entry.references)
    concepts = ('' if entry.concepts is None else
                f'<div class="concepts">{_concepts_html(entry.concepts)}'
                '</div>')
    return (
        f'<div class="entry" data-id="{html.escape(entry.image_id)}" '
        f'data-halluc="{len(entry.hallucinated_objects)}" {data}>'
        f'<div class="pic" style="width:{size}px;height:{size}px">'
        f'{picture}</div><div class="text">'
        f'<div class="id">{html.escape(entry.image_id)}</div>'
        f'<div class="caption">{_caption_html(entry)}</div>{halluc}'
        f'<div class="scores">{scores}</div>{concepts}'
        f'<ul class="refs">{refs}</ul></div></div>')


def _slug(name: str) -> str:
    return ''.join(ch if ch.isalnum() else '-' for ch in name.lower())


_STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
h1{font-size:1.3em;margin:.2em 0}
table.metrics{border-collapse:collapse;margin:.5em 0}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:2px 6px;
 font-size:.85em}
.controls{position:sticky;top:0;background:#fafafa;padding:.4em 0;
 border-bottom:1px solid #ddd;z-index:2}
.entry{display:flex;gap:12px;background:#fff;border:1px solid #ddd;
 margin:8px 0;padding:8px}
.pic{position:relative;flex:none;background:#eee}
.pic img{display:block}
.noimg{font-size:.75em;color:#888;padding:4px}
.patches{position:absolute;inset:0}
.hide-patches .patches{display:none}
.patch{position:absolute;box-sizing:border-box;border:2px solid}
.patch span{font-size:9px;background:rgba(0,0,0,.55);padding:0 2px}
.text{flex:1;min-width:0}
.id{font-size:.75em;color:#888}
.caption{font-size:1.05em;margin:.2em 0}
mark{background:#ffc9c9}
.halluc{font-size:.8em;color:#b00}
.score{display:inline-block;font-size:.8em;background:#eef;margin-right:6px;
 padding:0 4px}
.chip{display:inline-block;font-size:.8em;border:2px solid;border-radius:8px;
 padding:0 5px;margin:2px 4px 0 0}
.chip.masked{opacity:.45;border-style:dashed}
.refs{font-size:.85em;color:#444;margin:.3em 0;padding-left:1.2em}
"""

_SCRIPT = """
(function(){
 var list=document.getElementById('entries');
 var all=Array.prototype.slice.call(list.children);
 var state={page:0,size:50,shown:all};
 function apply(){
  var n=state.shown.length,pages=Math.max(1,Math.ceil(n/state.size));
  state.page=Math.min(state.page,pages-1);
  var lo=state.page*state.size,hi=lo+state.size;
  all.forEach(function(e){e.style.display='none';});
  state.shown.forEach(function(e,i){
   if(i>=lo&&i<hi){e.style.display='';list.appendChild(e);}});
  document.getElementById('pageinfo').textContent=
   'page '+(state.page+1)+' of '+pages+' ('+n+' images)';
 }
 function refresh(){
  var q=document.getElementById('filter').value.toLowerCase();
  var key=document.getElementById('sort').value;
  var shown=all.filter(function(e){
   return !q||e.textContent.toLowerCase().indexOf(q)>=0;});
  if(key){var desc=key.charAt(0)==='-',k=desc?key.slice(1):key;
   shown.sort(function(a,b){
    var x=parseFloat(a.getAttribute(k)),y=parseFloat(b.getAttribute(k));
    if(isNaN(x))x=-Infinity;if(isNaN(y))y=-Infinity;
    return desc?y-x:x-y;});}
  state.shown=shown;state.page=0;apply();
 }
 document.getElementById('filter').addEventListener('input',refresh);
 document.getElementById('sort').addEventListener('change',refresh);
 document.getElementById('prev').addEventListener('click',function(){
  if(state.page>0){state.page--;apply();}});
 document.getElementById('next').addEventListener('click',function(){
  state.page++;apply();});
 document.getElementById('patches').addEventListener('change',function(e){
  document.body.classList.toggle('hide-patches',!e.target.checked);});
 refresh();
})();
"""


def _header_html(header: GalleryHeader, entries: Sequence[GalleryEntry],
                 missing: int) -> str:
    rows = ''.join(
        f'<tr><th>{html.escape(k)}</th><td>{v:.1f}</td></tr>'
        for k, v in header.metrics.items()
        if isinstance(v, (int, float)))
    meta = ''.join(
        f'<div>{label}: <code>{html.escape(value)}</code></div>'
        for label, value in (('config', header.config),
                             ('model', header.checkpoint)) if value)
    note = (f'<div>{missing} image(s) without a thumbnail (file not found '
            'or unreadable)</div>' if missing else '')
    names = sorted({k for e in entries for k in e.scores})
    options = ['<option value="">image order</option>']
    for name in names:
        attr = f'data-score-{_slug(name)}'
        options.append(f'<option value="-{attr}">{html.escape(name)} high '
                       'first</option>')
        options.append(f'<option value="{attr}">{html.escape(name)} low '
                       'first</option>')
    options.append('<option value="-data-halluc">most hallucinated objects '
                   'first</option>')
    return (f'<h1>{html.escape(header.title)}</h1>{meta}{note}'
            + (f'<table class="metrics">{rows}</table>' if rows else '')
            + '<div class="controls"><input id="filter" placeholder='
            '"filter: words in captions, references, concepts, ids" '
            'size="50"> <select id="sort">' + ''.join(options) +
            '</select> <button id="prev">&lt;</button> <span id="pageinfo">'
            '</span> <button id="next">&gt;</button> <label><input '
            'type="checkbox" id="patches" checked> PCM\'s patches</label>'
            '</div>')


def write_gallery(out_dir: str, entries: Sequence[GalleryEntry],
                  header: GalleryHeader,
                  preprocess_cfg: Union[int, PreprocessCfg, dict],
                  thumb_size: int = 160, workers: int = 4) -> str:
    """Write ``<out_dir>/index.html`` and its thumbnails.

    Args:
        out_dir (str): Output folder (created).
        entries (Sequence[GalleryEntry]): The images, in page order.
        header (GalleryHeader): Title, run files and metric table.
        preprocess_cfg (int | PreprocessCfg | dict): The model's CLIP
            preprocessing: thumbnails show what CLIP saw, so the patch grid
            lies on them exactly.
        thumb_size (int): Thumbnail side in pixels. Defaults to 160.
        workers (int): Threads making thumbnails. Defaults to 4.

    Returns:
        str: The page's path.

    Raises:
        ValueError: If ``entries`` is empty (an empty gallery would look
            like a result).
    """
    if not entries:
        raise ValueError('no captioned image to show')
    os.makedirs(osp.join(out_dir, THUMBS_DIR), exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        thumbs = list(pool.map(
            lambda ie: _thumbnail(ie[1], ie[0], out_dir, preprocess_cfg,
                                  thumb_size), enumerate(entries)))
    missing = sum(1 for rel, _ in thumbs if rel is None)
    body = ''.join(_entry_html(e, rel, problem, thumb_size)
                   for e, (rel, problem) in zip(entries, thumbs))
    index = json.dumps([e.image_id for e in entries])
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(header.title)}</title>'
            f'<style>{_STYLE}</style></head><body>'
            f'{_header_html(header, entries, missing)}'
            f'<div id="entries">{body}</div>'
            f'<script type="application/json" id="image-ids">{index}'
            f'</script><script>{_SCRIPT}</script></body></html>')
    path = osp.join(out_dir, GALLERY_FILE)
    atomic_write_text(path, page)
    return path
