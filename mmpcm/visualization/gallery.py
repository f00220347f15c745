"""A static HTML gallery of captioned images (``tools/test.py --show-dir``,
``tools/caption.py --show-dir``).

One self-contained ``index.html`` (inline style and script, no network at
view time) beside a ``thumbs/`` folder of small JPEGs, one per image: CLIP's
view of the image, with PCM's selected patches outlined in the page
(toggle). Per image: the prediction (hallucinated object words marked), the
references, per-image scores, and the retrieved concepts with their
probabilities. The entries are JSON in the page (the script element
``gallery-data``: ``{"thumb_size", "entries": [{"id", "caption", "refs",
"scores", "halluc", "words", "marked", "thumb" or "problem", "grid",
"concepts", "patches"}]}``); the page's script draws one page of 50 at a
time, sorts and filters them, and thumbnails load lazily, so 5,000 images
open as fast as 50.
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


def _entry_data(entry: GalleryEntry, thumb: Optional[str],
                problem: Optional[str]) -> Dict:
    """One entry as the page's data (rendered by its script)."""
    data: Dict = dict(id=entry.image_id, caption=entry.caption,
                      refs=list(entry.references),
                      scores={k: round(float(v), 2)
                              for k, v in entry.scores.items()},
                      halluc=list(entry.hallucinated_objects))
    if entry.words is not None and entry.hallucinated:
        data['words'] = list(entry.words)
        data['marked'] = sorted(entry.hallucinated)
    if thumb:
        data['thumb'] = thumb
    else:
        data['problem'] = problem or ''
    view = entry.concepts
    if view is not None:
        colours = concept_colours(view)
        data['grid'] = view.grid
        data['concepts'] = [
            dict(word=c['word'], prob=c['prob'], kept=c['kept'],
                 colour=colours[c['word']]) for c in view.concepts]
        data['patches'] = [
            dict(row=p['row'], col=p['col'], word=p['concept'],
                 sim=p['similarity'],
                 colour=colours.get(p['concept'], '#ffffff'))
            for p in view.patches]
    return data


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

# Renders one page of entries from the embedded data with DOM calls (text
# is never parsed as HTML); sorts, filters and pages.
_SCRIPT = """
(function(){
 var data=JSON.parse(document.getElementById('gallery-data').textContent);
 var list=document.getElementById('entries'),size=data.thumb_size;
 var items=data.entries.map(function(e,i){
  e.order=i;e.text=[e.id,e.caption].concat(e.refs,(e.concepts||[]).map(
   function(c){return c.word;})).join(' ').toLowerCase();return e;});
 var state={page:0,per:50,shown:items};
 function el(tag,cls,text){var n=document.createElement(tag);
  if(cls)n.className=cls;if(text!==undefined)n.textContent=text;return n;}
 function render(e){
  var box=el('div','entry');box.setAttribute('data-id',e.id);
  var pic=el('div','pic');pic.style.width=pic.style.height=size+'px';
  if(e.thumb){var img=el('img');img.src=e.thumb;img.loading='lazy';
   img.width=img.height=size;img.alt=e.id;pic.appendChild(img);
   if(e.patches){var ps=el('div','patches'),cell=100/e.grid;
    e.patches.forEach(function(p){var b=el('div','patch');
     b.style.left=(p.col*cell)+'%';b.style.top=(p.row*cell)+'%';
     b.style.width=b.style.height=cell+'%';b.style.borderColor=p.colour;
     b.title=p.word+' ('+p.sim.toFixed(2)+')';
     var t=el('span',null,p.word);t.style.color=p.colour;b.appendChild(t);
     ps.appendChild(b);});pic.appendChild(ps);}}
  else pic.appendChild(el('div','noimg',e.problem));
  box.appendChild(pic);
  var text=el('div','text');text.appendChild(el('div','id',e.id));
  var cap=el('div','caption');
  if(e.words){e.words.forEach(function(w,i){
    if(i)cap.appendChild(document.createTextNode(' '));
    if(e.marked.indexOf(i)>=0){var m=el('mark',null,w);
     m.title='not in the image';cap.appendChild(m);}
    else cap.appendChild(document.createTextNode(w));});}
  else cap.textContent=e.caption;
  text.appendChild(cap);
  if(e.halluc.length)text.appendChild(el('div','halluc',
   'not in the image: '+e.halluc.join(', ')));
  var sc=el('div','scores');Object.keys(e.scores).forEach(function(k){
   sc.appendChild(el('span','score',k+' '+e.scores[k].toFixed(1)));});
  text.appendChild(sc);
  if(e.concepts){var cs=el('div','concepts');e.concepts.forEach(function(c){
    var chip=el('span',c.kept?'chip':'chip masked',
     c.word+' '+c.prob.toFixed(2));chip.style.borderColor=c.colour;
    cs.appendChild(chip);});text.appendChild(cs);}
  var refs=el('ul','refs');e.refs.forEach(function(r){
   refs.appendChild(el('li',null,r));});text.appendChild(refs);
  box.appendChild(text);return box;}
 function apply(){
  var n=state.shown.length,pages=Math.max(1,Math.ceil(n/state.per));
  state.page=Math.max(0,Math.min(state.page,pages-1));
  var lo=state.page*state.per,frag=document.createDocumentFragment();
  state.shown.slice(lo,lo+state.per).forEach(function(e){
   frag.appendChild(render(e));});
  list.textContent='';list.appendChild(frag);
  if(!n)list.appendChild(el('p','noimg','No image matches the filter.'));
  document.getElementById('pageinfo').textContent=
   'page '+(state.page+1)+' of '+pages+' ('+n+' images)';}
 function refresh(){
  var q=document.getElementById('filter').value.toLowerCase();
  var key=document.getElementById('sort').value;
  var shown=items.filter(function(e){return !q||e.text.indexOf(q)>=0;});
  function val(e){if(key.slice(1)==='halluc')return e.halluc.length;
   var v=e.scores[key.slice(1)];return v===undefined?-Infinity:v;}
  if(key)shown.sort(function(a,b){var d=val(a)-val(b);
   return key.charAt(0)==='-'?-d:d;});
  else shown.sort(function(a,b){return a.order-b.order;});
  state.shown=shown;state.page=0;apply();}
 document.getElementById('filter').addEventListener('input',refresh);
 document.getElementById('sort').addEventListener('change',refresh);
 document.getElementById('prev').addEventListener('click',function(){
  state.page--;apply();});
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
        value = html.escape(name, quote=True)
        options.append(f'<option value="-{value}">{html.escape(name)} high '
                       'first</option>')
        options.append(f'<option value="+{value}">{html.escape(name)} low '
                       'first</option>')
    if any(e.words is not None for e in entries):  # CHAIR was run
        options.append('<option value="-halluc">most hallucinated objects '
                       'first</option>')
    searched = ['captions'] + (['references'] if any(
        e.references for e in entries) else []) + (['concepts'] if any(
            e.concepts is not None for e in entries) else []) + ['ids']
    return (f'<h1>{html.escape(header.title)}</h1>{meta}{note}'
            + (f'<table class="metrics">{rows}</table>' if rows else '')
            + '<div class="controls"><input id="filter" placeholder='
            f'"filter: words in {", ".join(searched)}" '
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
    data = dict(thumb_size=thumb_size, entries=[
        _entry_data(e, rel, problem)
        for e, (rel, problem) in zip(entries, thumbs)])
    # '</' inside a script element would end it: JSON allows '<\/'
    payload = json.dumps(data, ensure_ascii=False).replace('</', '<\\/')
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(header.title)}</title>'
            f'<style>{_STYLE}</style></head><body>'
            f'{_header_html(header, entries, missing)}'
            '<noscript>The entries are drawn by the page\'s script; their '
            'data is in the script element "gallery-data".</noscript>'
            '<div id="entries"></div>'
            f'<script type="application/json" id="gallery-data">{payload}'
            f'</script><script>{_SCRIPT}</script></body></html>')
    path = osp.join(out_dir, GALLERY_FILE)
    atomic_write_text(path, page)
    return path
