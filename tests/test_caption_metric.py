"""PCMCaptionMetric: pycocoevalcap scores, ids as given, no side effects."""
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import warnings

import numpy as np

import pytest
from pycocoevalcap.tokenizer import ptbtokenizer

import mmpcm.registry  # noqa: F401  (applies the compat patches)
from mmpcm.evaluation import (IsolatedPTBTokenizer, PCMCaptionMetric,
                              SpiceUnavailableWarning)
from mmpcm.evaluation.metrics import caption_metric
from mmpcm.registry import METRICS
from mmpretrain.structures import DataSample

# pycocoevalcap is a namespace package (no __init__.py, no __file__).
PACKAGE_DIR = os.path.dirname(
    os.path.dirname(os.path.abspath(ptbtokenizer.__file__)))


def write_ann(path, references):
    """Writes a COCO caption file from {image_id: [caption, ...]}."""
    content = dict(
        images=[dict(id=i) for i in references],
        annotations=[
            dict(image_id=i, id=n, caption=c)
            for n, (i, c) in enumerate((i, c) for i, caps in references.items()
                                       for c in caps)
        ])
    path.write_text(json.dumps(content))
    return str(path)


def evaluate(metric, predictions, as_data_sample=False):
    """Runs process + evaluate on {image_id: caption}."""
    samples = []
    for image_id, caption in predictions.items():
        if as_data_sample:
            sample = DataSample(metainfo=dict(image_id=image_id))
            sample.pred_caption = caption
        else:
            sample = dict(image_id=image_id, pred_caption=caption)
        samples.append(sample)
    metric.process(None, samples[:1])
    metric.process(None, samples[1:])
    return metric.evaluate(len(samples))


def package_files():
    """Every path under the installed pycocoevalcap folder."""
    found = set()
    for root, dirs, files in os.walk(PACKAGE_DIR):
        found.update(os.path.join(root, name) for name in dirs + files)
    return found


def under_package(path):
    """Whether path lies inside the pycocoevalcap folder."""
    path = os.path.abspath(path)
    return os.path.commonpath([path, PACKAGE_DIR]) == PACKAGE_DIR


def test_registered():
    assert METRICS.get('PCMCaptionMetric') is PCMCaptionMetric


def test_identical_captions_all_metrics_no_package_writes(
        tmp_path, monkeypatch):
    """Perfect captions, int ids, DataSample outputs; all four metrics."""
    references = {
        1: ['a dog runs on the grass'],
        2: ['a cat sleeps on a red sofa'],
        3: ['two birds fly over the water'],
    }
    ann_file = write_ann(tmp_path / 'ann.json', references)

    popen_calls = []
    real_popen = subprocess.Popen

    class SpyPopen(real_popen):

        def __init__(self, args, *rest, **kwargs):
            popen_calls.append((list(args), kwargs.get('cwd')))
            super().__init__(args, *rest, **kwargs)

    temp_dirs = []
    real_named = tempfile.NamedTemporaryFile

    def spy_named(*args, **kwargs):
        temp_dirs.append(kwargs.get('dir'))
        return real_named(*args, **kwargs)

    monkeypatch.setattr(subprocess, 'Popen', SpyPopen)
    monkeypatch.setattr(tempfile, 'NamedTemporaryFile', spy_named)

    before = package_files()
    metric = PCMCaptionMetric(
        ann_file=ann_file, metrics=('BLEU', 'METEOR', 'ROUGE_L', 'CIDEr'))
    scores = evaluate(
        metric, {i: caps[0]
                 for i, caps in references.items()},
        as_data_sample=True)
    assert package_files() == before

    # pycocoevalcap's own tokenizer would create a NamedTemporaryFile in
    # its package folder and run java with cwd there.
    assert all(d is None or not under_package(d) for d in temp_dirs)
    ptb_calls = [(a, c) for a, c in popen_calls if any('PTBTokenizer' in x
                                                        for x in a)]
    assert len(ptb_calls) == 2  # references, then predictions
    for args, cwd in ptb_calls:
        assert not under_package(cwd)
        assert not under_package(args[-1])
        assert not os.path.exists(cwd)  # the temp dir is gone again

    expected_keys = {
        f'coco-caption/{k}'
        for k in ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR',
                  'ROUGE_L', 'CIDEr')
    }
    assert set(scores) == expected_keys
    for n in range(1, 5):
        assert scores[f'coco-caption/Bleu_{n}'] == pytest.approx(
            100.0, rel=1e-6)
    assert scores['coco-caption/ROUGE_L'] == pytest.approx(100.0, rel=1e-9)
    assert scores['coco-caption/METEOR'] == pytest.approx(100.0, abs=1.0)
    # Identical single references: every n-gram vector equals the
    # candidate's (and is non-zero: each has n-grams with df 1 of 3), so
    # every cosine is 1 and no length penalty: 10 * mean_n(1) * 100.
    assert scores['coco-caption/CIDEr'] == pytest.approx(1000.0, rel=1e-9)
    assert metric.results == []  # evaluate() clears them


def test_cider_by_hand_string_ids(tmp_path):
    r"""CIDEr-D from its definition on three images with string ids.

    CIDEr-D (pycocoevalcap's Cider): for each n in 1..4, tf-idf vectors
    g(ngram) = tf * (log N - log max(1, df)), N = 3 images, df counted over
    the reference sets. sim_n = sum_k min(g_c, g_r) g_r / (|g_c| |g_r|)
    * exp(-(len_c - len_r)^2 / (2 * 6^2)); an all-zero vector gives 0.
    CIDEr_i = 10 / m * sum_refs mean_n sim_n (m = 1 reference here); the
    corpus score is the mean over images; the metric reports it x100.

    References ("a" and "on" occur in the refs of 2 images, all other
    n-grams in 1):
      x1: "a dog runs on grass"        candidate identical
      x2: "a cat sleeps on sofa"       candidate "a cat sleeps"
      x3: "two birds fly over water"   candidate identical
    Let a = log(3/2) (df 2) and b = log 3 (df 1).
    x1, x3: identical vectors -> sim_n = 1 for n = 1..4 -> CIDEr = 10.
    x2 (length 3 vs 5, penalty p = exp(-4/72) = exp(-1/18)):
      n=1: cand {a: a, cat: b, sleeps: b}; ref adds {on: a, sofa: b}
           sim = (a^2 + 2b^2) / sqrt((a^2 + 2b^2)(2a^2 + 3b^2))
               = sqrt((a^2 + 2b^2) / (2a^2 + 3b^2))
      n=2: cand 2 bigrams, ref 4, all weight b: 2b^2/(sqrt2 b * 2b) = 1/sqrt2
      n=3: cand 1 trigram, ref 3: b^2/(b * sqrt3 b) = 1/sqrt3
      n=4: candidate has no 4-gram -> 0
      sim1 = sqrt(2.5782 / 3.9496) = 0.8079
      CIDEr = 10 * p * (sim1 + 1/sqrt2 + 1/sqrt3 + 0) / 4
            = 10 * 0.94596 * (0.8079 + 0.7071 + 0.5774) / 4 ~= 4.948
    Corpus: (10 + 10 + 4.948) / 3 ~= 8.316, reported ~= 831.6.
    """
    references = {
        'x1': ['A dog runs on grass.'],
        'x2': ['a cat sleeps on sofa'],
        'x3': ['Two birds fly over water'],
    }
    predictions = {'x1': 'a dog runs on grass', 'x2': 'A cat sleeps!',
                   'x3': 'two birds fly over water'}
    a, b = math.log(1.5), math.log(3)
    sim1 = math.sqrt((a * a + 2 * b * b) / (2 * a * a + 3 * b * b))
    cider_x2 = 10 * math.exp(-1 / 18) * (
        sim1 + 1 / math.sqrt(2) + 1 / math.sqrt(3)) / 4
    expected = 100 * (10 + 10 + cider_x2) / 3
    assert expected == pytest.approx(831.6, abs=0.1)

    metric = PCMCaptionMetric(
        ann_file=write_ann(tmp_path / 'ann.json', references),
        metrics=('CIDEr', ),
        prefix='cap')
    scores = evaluate(metric, predictions)
    assert scores == {'cap/CIDEr': pytest.approx(expected, rel=1e-9)}


def test_cider_of_one_image_warns_that_it_is_zero(tmp_path):
    """One scored image: every idf is log(1/1) = 0, so even a perfect
    caption gets CIDEr 0; the warning names the count. Two images do not
    warn (their distinct n-grams have idf log 2)."""
    references = {1: ['a dog runs on the grass'], 2: ['a red bus']}
    metric = PCMCaptionMetric(
        ann_file=write_ann(tmp_path / 'ann.json', references),
        metrics=('CIDEr', ))
    with pytest.warns(caption_metric.FewImagesCIDErWarning,
                      match=r'CIDEr of 1 scored image\(s\) is 0 by '
                      'construction'):
        scores = evaluate(metric, {1: 'a dog runs on the grass'})
    assert scores == {'coco-caption/CIDEr': 0.0}

    with warnings.catch_warnings():
        warnings.simplefilter('error', caption_metric.FewImagesCIDErWarning)
        scores = evaluate(metric, {i: c[0] for i, c in references.items()})
    assert scores['coco-caption/CIDEr'] > 0


def test_int_and_str_ids_are_not_cast(tmp_path):
    references = {7: ['a man rides a horse'], '7': ['a boat on a lake']}
    metric = PCMCaptionMetric(
        ann_file=write_ann(tmp_path / 'ann.json', references),
        metrics=('BLEU', ))
    scores = evaluate(metric, {7: 'a man rides a horse',
                               '7': 'a boat on a lake'})
    assert scores['coco-caption/Bleu_4'] == pytest.approx(100.0, rel=1e-6)

    # A str id that only exists as int in the ground truth is an error.
    metric.process(None, [dict(image_id='8', pred_caption='x')])
    with pytest.raises(ValueError, match="not in .*'8'"):
        metric.evaluate(1)


def test_tokenizer_matches_pycocoevalcap_cleanup(tmp_path):
    tokens = IsolatedPTBTokenizer().tokenize({
        1: [{'caption': 'A Dog, running\nfast!'}, {'caption': ''}],
        'b': [{'caption': 'The "cat" sleeps...'}],
    })
    assert tokens == {1: ['a dog running fast', ''], 'b': ['the cat sleeps']}


def test_java_missing_fails_at_construction(tmp_path, monkeypatch):
    ann_file = write_ann(tmp_path / 'ann.json', {1: ['a dog']})
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(RuntimeError, match='needs Java'):
        PCMCaptionMetric(ann_file=ann_file)


def test_unknown_metrics(tmp_path):
    ann_file = write_ann(tmp_path / 'ann.json', {1: ['a dog']})
    with pytest.raises(ValueError, match='Unknown'):
        PCMCaptionMetric(ann_file=ann_file, metrics=('Bleu_4', ))
    with pytest.raises(ValueError, match='Unknown'):
        PCMCaptionMetric(ann_file=ann_file, metrics=())


def test_bad_ann_file(tmp_path):
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(
        images=[dict(id=1)],
        annotations=[dict(image_id=1, caption='a dog'),
                     dict(image_id=2, caption='a cat')])))
    with pytest.raises(ValueError, match='image id 2, which is missing'):
        PCMCaptionMetric(ann_file=str(path))
    path.write_text(json.dumps(dict(images=[dict(file_name='x.jpg')],
                                    annotations=[])))
    with pytest.raises(ValueError, match=r'images\[0\] .* has no "id"'):
        PCMCaptionMetric(ann_file=str(path))


def test_bad_predictions(tmp_path):
    references = {1: ['a dog'], 2: []}
    metric = PCMCaptionMetric(
        ann_file=write_ann(tmp_path / 'ann.json', references),
        metrics=('BLEU', ))
    with pytest.raises(KeyError, match='image_id'):
        metric.process(None, [dict(pred_caption='a dog')])
    with pytest.raises(TypeError, match='pred_caption must be a str'):
        metric.process(None, [dict(image_id=1, pred_caption=None)])
    for predictions, message in (
        ([(3, 'a dog')], 'not in'),
        ([(1, 'a dog'), (1, 'a dog')], 'more than once'),
        ([(2, 'a dog')], 'no reference caption'),
    ):
        metric.process(None, [
            dict(image_id=i, pred_caption=c) for i, c in predictions])
        with pytest.raises(ValueError, match=message):
            metric.evaluate(len(predictions))
        metric.results.clear()


# --------------------------------------------------------------------------
# SPICE
# --------------------------------------------------------------------------
@pytest.fixture
def fresh_spice_warning(monkeypatch):
    """Forget that the once-per-process SPICE warning was already given."""
    monkeypatch.setattr(caption_metric, '_spice_warning_issued', False)


def fake_corenlp(folder):
    """Two (empty) jars with CoreNLP 3.6.0's names."""
    folder.mkdir()
    for name in caption_metric.CORENLP_JARS:
        (folder / name).write_bytes(b'')
    return str(folder)


def test_spice_missing_is_skipped_with_one_warning(tmp_path,
                                                   fresh_spice_warning):
    ann_file = write_ann(tmp_path / 'ann.json', {1: ['a dog']})
    empty = str(tmp_path / 'no_corenlp')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        first = PCMCaptionMetric(ann_file=ann_file, corenlp_dir=empty)
        second = PCMCaptionMetric(ann_file=ann_file, corenlp_dir=empty)
    spice_warnings = [w for w in caught
                      if issubclass(w.category, SpiceUnavailableWarning)]
    assert len(spice_warnings) == 1
    message = str(spice_warnings[0].message)
    for needle in ('stanford-corenlp-3.6.0.jar',
                   'stanford-corenlp-3.6.0-models.jar', empty, 'corenlp_dir',
                   'skipped'):
        assert needle in message
    assert first.metrics == second.metrics == [
        'BLEU', 'METEOR', 'ROUGE_L', 'CIDEr']
    # The default location named when no folder is given.
    assert caption_metric.default_corenlp_dir() in (
        caption_metric.corenlp_missing_message())


def test_spice_demanded_but_missing_is_an_error(tmp_path,
                                                fresh_spice_warning):
    ann_file = write_ann(tmp_path / 'ann.json', {1: ['a dog']})
    empty = str(tmp_path / 'no_corenlp')
    with warnings.catch_warnings():
        warnings.simplefilter('error', SpiceUnavailableWarning)
        with pytest.raises(FileNotFoundError) as info:
            PCMCaptionMetric(ann_file=ann_file, metrics=('BLEU', 'SPICE'),
                             corenlp_dir=empty)
    assert 'asks for SPICE' in str(info.value)
    assert 'stanford-corenlp-3.6.0-models.jar' in str(info.value)
    assert empty in str(info.value)


SPICE_STDOUT = """Parsing reference captions
********  SPICE Evaluation  ********

All tuples
  f-score:\t0.250 (SPICE metric)
  precision:\t0.300
  recall:\t0.214
SPICE evaluation took: 1.234 s
"""


def test_parse_spice_summary():
    assert caption_metric.parse_spice_summary(SPICE_STDOUT) == 0.25
    with pytest.raises(RuntimeError, match='no "f-score'):
        caption_metric.parse_spice_summary('Exception in thread "main"')


def test_spice_runs_outside_the_package(tmp_path, monkeypatch,
                                        fresh_spice_warning):
    """With CoreNLP present, SPICE runs in a temp dir; nothing is written
    into pycocoevalcap. Java is faked for SPICE only (the CoreNLP jars
    cannot be downloaded here); the tokenizer runs for real."""
    references = {'a': ['A dog runs.', 'a dog is running'], 7: ['a red car']}
    ann_file = write_ann(tmp_path / 'ann.json', references)
    corenlp = fake_corenlp(tmp_path / 'corenlp')
    spice_calls = []
    real_run = subprocess.run

    def fake_run(cmd, *args, **kwargs):
        if caption_metric.SPICE_MAIN_CLASS not in cmd:
            return real_run(cmd, *args, **kwargs)
        cwd = kwargs['cwd']
        input_file = cmd[cmd.index(caption_metric.SPICE_MAIN_CLASS) + 1]
        with open(input_file) as f:
            spice_calls.append((list(cmd), cwd, json.load(f)))
        return subprocess.CompletedProcess(cmd, 0, SPICE_STDOUT.encode(), b'')

    monkeypatch.setattr(subprocess, 'run', fake_run)
    before = package_files()
    metric = PCMCaptionMetric(ann_file=ann_file, corenlp_dir=corenlp,
                              spice_max_memory='2G')
    assert metric.metrics[-1] == 'SPICE'  # available, so on by default
    scores = evaluate(metric, {'a': 'A dog runs!', 7: 'a blue car'})
    assert package_files() == before
    assert scores['coco-caption/SPICE'] == pytest.approx(25.0)

    (cmd, cwd, items), = spice_calls
    assert not under_package(cwd) and not os.path.exists(cwd)
    assert f'-Djava.io.tmpdir={cwd}' in cmd and '-Xmx2G' in cmd
    assert '-cache' not in cmd and '-out' not in cmd
    classpath = cmd[cmd.index('-cp') + 1].split(os.pathsep)
    assert classpath[0] == caption_metric.SPICE_JAR
    assert classpath[1:] == [os.path.join(corenlp, n)
                             for n in caption_metric.CORENLP_JARS]
    # PTB-tokenized captions (as COCOEvalCap feeds SPICE), images numbered.
    assert items == [
        dict(image_id=0, test='a dog runs',
             refs=['a dog runs', 'a dog is running']),
        dict(image_id=1, test='a blue car', refs=['a red car']),
    ]


def test_spice_cache_dir_is_passed(tmp_path):
    cmd = caption_metric.spice_command('java', ['a.jar', 'b.jar'], 'in.json',
                                       str(tmp_path), cache_dir='cache')
    assert cmd[cmd.index('-cache') + 1] == 'cache'


def test_results_are_plain_picklable_dicts(tmp_path):
    metric = PCMCaptionMetric(
        ann_file=write_ann(tmp_path / 'ann.json', {3: ['a dog']}),
        metrics=('BLEU', ))
    metric.process(None, [dict(image_id=np.int64(3), pred_caption='a dog')])
    assert metric.results == [dict(image_id=3, caption='a dog')]
    assert type(metric.results[0]['image_id']) is int
    assert pickle.loads(pickle.dumps(metric.results)) == metric.results
    with pytest.raises(TypeError, match='str or int'):
        metric.process(None, [dict(image_id=3.0, pred_caption='a dog')])


def test_reference_images_without_prediction_warn(tmp_path):
    """Scoring a subset of the references is said, not silent."""
    references = {1: ['a dog runs on the grass'], 2: ['a red bus'],
                  3: ['a cat on a bed']}
    metric = PCMCaptionMetric(
        ann_file=write_ann(tmp_path / 'ann.json', references),
        metrics=('BLEU', ))
    with pytest.warns(caption_metric.PartialTestSetWarning,
                      match=r'ann.json: 1 of 3 reference images have no '
                      r'prediction \(e.g. \[3\]\); the scores cover the 2 '
                      'predicted images only'):
        evaluate(metric, {1: 'a dog runs', 2: 'a red bus'})
    with warnings.catch_warnings():
        warnings.simplefilter('error', caption_metric.PartialTestSetWarning)
        evaluate(metric, {i: c[0] for i, c in references.items()})


def test_reference_file_encodings_and_errors(tmp_path):
    """References go through the one text decoder (UTF-16 too); broken
    JSON and other JSON name the file."""
    path = write_ann(tmp_path / 'ann.json', {1: ['a café']})
    text = open(path, encoding='utf-8').read()
    utf16 = tmp_path / 'ann16.json'
    utf16.write_bytes(text.encode('utf-16'))
    assert caption_metric.load_references(str(utf16)) == {1: ['a café']}
    broken = tmp_path / 'broken.json'
    broken.write_text(text[:-2])
    with pytest.raises(ValueError, match=f'^{broken}: not valid JSON'):
        caption_metric.load_references(str(broken))
    other = tmp_path / 'karpathy.json'
    other.write_text('{"images": {}}')
    with pytest.raises(ValueError, match=f'^{other}: not a COCO caption '
                       'file'):
        caption_metric.load_references(str(other))


def test_scorers_and_spice_are_imported_when_used():
    """Importing the metric loads pycocoevalcap's tokenizer only: each
    scorer's module (and SPICE's) is imported when it first runs."""
    code = ('import sys\n'
            'import mmpcm.evaluation.metrics.caption_metric as cm\n'
            'print(sorted(m for m in sys.modules\n'
            '             if m.startswith("pycocoevalcap.")\n'
            '             and not m.startswith("pycocoevalcap.tokenizer")))\n'
            'print(cm.SPICE_JAR.endswith(".jar"))\n'
            'print("pycocoevalcap.spice.spice" in sys.modules)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == ['[]', 'True', 'True']
