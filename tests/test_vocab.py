"""Word tokenizer and vocabulary: the words the caption metric counts."""
import json

import pytest
from pycocoevalcap.meteor.meteor import Meteor

from mmpcm.evaluation import IsolatedPTBTokenizer, PCMCaptionMetric
from mmpcm.text import (WordVocabulary, detokenize_caption,
                                      scan_caption, tokenize_caption)
from mmpcm.preprocessing.corpus import prepare_corpus

# Captions the old [a-z0-9] tokenizer mangled (t shirt, caf, jalape os,
# dog s, CJK and emoji lost), and PTB's contractions, numbers and quotes.
CAPTIONS = [
    'A man in a t-shirt at a café.',
    'Jalapeños and a 3-year-old on a pizza.',
    'The dog’s ball and the cats’ toys.',
    "He doesn't run, he can't, and I’m sure they'll stop!",
    'It is 3.5 meters wide, 10,000 people and 1/2 cup.',
    '“Hello” said ‘the’ man — at the U.S. border, Mr. Smith',
    '一只猫 坐在 桌子上',
    '猫が寝ている。',
    'A cat 🐱 on a mat 😀!',
    'Naïve Zürich crème brûlée, Ελληνικά кириллица',
    'state-of-the-art e-mail well--known -- dash – en',
    'a sign that says 50% off & $5 (big) sale',
    'o’clock rock ’n’ roll, gonna, cannot, l’été, y’all',
    'A decomposed cafe\u0301 and a soft\u00adhyphen',
]


def ptb_words(captions):
    """The words pycocoevalcap scores: PTB tokens, punctuation removed."""
    tokenized = IsolatedPTBTokenizer().tokenize(
        {i: [{'caption': c}] for i, c in enumerate(captions)})
    return [tokenized[i][0].split() for i in range(len(captions))]


def test_words_are_the_words_the_metric_counts():
    """Against the real PTB tokenizer (Java), word for word, for every
    caption whose words PTB does not respell (see the next test)."""
    ours = [tokenize_caption(c) for c in CAPTIONS]
    theirs = ptb_words(CAPTIONS)
    respelled = {11, 13}  # brackets (-lrb-), NFD input, kept as written
    for i, (o, t) in enumerate(zip(ours, theirs)):
        if i not in respelled:
            assert o == t, CAPTIONS[i]
    assert ours[0] == ['a', 'man', 'in', 'a', 't-shirt', 'at', 'a', 'café']
    assert ours[1][0] == 'jalapeños' and '3-year-old' in ours[1]
    assert ours[2][:4] == ['the', 'dog', "'s", 'ball']
    assert ours[3][:6] == ['he', 'does', "n't", 'run', 'he', 'ca']
    assert ours[4][2:4] == ['3.5', 'meters']
    assert ours[6] == ['一只猫', '坐在', '桌子上']
    assert ours[8] == ['a', 'cat', 'on', 'a', 'mat']  # PTB drops emoji


def test_decoded_words_tokenize_back_for_the_metric():
    """caption -> words -> text: PTB gives the caption's own words back,
    including where PTB respells (( -> -lrb-) or the input is not NFC."""
    decoded = [detokenize_caption(tokenize_caption(c)) for c in CAPTIONS]
    assert ptb_words(decoded)[:13] == ptb_words(CAPTIONS)[:13]
    # NFC: the decomposed caption reads as the composed one.
    assert tokenize_caption(CAPTIONS[13]) == tokenize_caption(
        'A decomposed café and a softhyphen')
    assert decoded[2] == "the dog's ball and the cats toys"
    assert decoded[3].startswith("he doesn't run he can't and i'm sure "
                                 "they'll stop")


def test_a_perfect_model_scores_its_references(tmp_path):
    """caption -> ids -> decoded caption scores as the caption itself:
    BLEU-4, ROUGE-L and METEOR 100 (image by image, as the reference
    scored against itself), the same CIDEr. The [a-z0-9] tokenizer lost
    words here (caf, jalape os, the CJK captions). Not the NFD caption: the
    metric compares code points, and the vocabulary's words are NFC."""
    captions = CAPTIONS[:13]
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(
        images=[dict(id=i) for i in range(len(captions))],
        annotations=[dict(image_id=i, id=i, caption=c)
                     for i, c in enumerate(captions)])), encoding='utf-8')
    vocab = WordVocabulary.from_captions(captions, min_count=1)
    decoded = {i: vocab.decode(vocab.encode(c))
               for i, c in enumerate(captions)}
    assert vocab.unk_id not in sum((vocab.encode(c) for c in captions), [])

    def score(predictions):
        metric = PCMCaptionMetric(
            ann_file=str(ann), metrics=('BLEU', 'ROUGE_L', 'CIDEr'))
        metric.process(None, [dict(image_id=i, pred_caption=c)
                              for i, c in predictions.items()])
        return metric.evaluate(len(predictions))

    ours, upper_bound = score(decoded), score(dict(enumerate(captions)))
    assert ours['coco-caption/Bleu_4'] == pytest.approx(100.0)
    assert ours['coco-caption/ROUGE_L'] == pytest.approx(100.0)
    assert ours == pytest.approx(upper_bound)

    # METEOR (one Java process): decoded and original per image.
    tokenizer = IsolatedPTBTokenizer()
    refs = tokenizer.tokenize({i: [{'caption': c}]
                               for i, c in enumerate(captions)})
    cands = tokenizer.tokenize({i: [{'caption': c}]
                                for i, c in decoded.items()})
    meteor = Meteor()
    try:
        _, per_image = meteor.compute_score(
            {(k, i): refs[i] for k in 'do' for i in refs},
            {**{('d', i): cands[i] for i in refs},
             **{('o', i): refs[i] for i in refs}})
    finally:
        with meteor.lock:
            meteor.meteor_p.stdin.close()
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
    n = len(captions)
    assert per_image[:n] == pytest.approx(per_image[n:])
    assert per_image[:n] == pytest.approx([1.0] * n)


def test_rare_words_are_reported_and_become_unk():
    captions = ['a dog on a mat', 'a dog 🐱 on grass', 'a café, a dog!']
    vocab, report = WordVocabulary.from_captions_with_report(
        captions, min_count=2)
    assert vocab.words[4:] == ['a', 'dog', 'on']
    assert report.num_captions == 3 and report.num_tokens == 13
    assert report.num_words == 6 and report.num_kept == 3
    assert report.dropped_words == (('café', 1), ('grass', 1), ('mat', 1))
    assert report.num_unk_tokens == 3
    assert report.unk_share == pytest.approx(3 / 13)
    assert report.removed_chars == (('🐱', 1), )
    assert report.num_punctuation == 2  # ',' and '!'
    assert vocab.encode('a café') == [vocab._index['a'], vocab.unk_id]
    text = str(report)
    assert 'keeps 3 of 6 distinct words (min count 2)' in text
    assert "3 tokens (23.08%) become <unk>; most frequent: 'café' 1" in text
    assert "1 characters removed" in text and 'U+1F431' in text
    assert WordVocabulary.from_captions(captions, min_count=2) == vocab


def test_scan_counts_what_the_tokenizer_removes():
    scan = scan_caption('A cat\u200d 🐱\ufe0f on a\x07mat — “yes”.')
    assert scan.words == ['a', 'cat', 'on', 'a', 'mat', 'yes']
    assert scan.removed_chars == ['\u200d', '🐱', '\ufe0f', '\x07']
    assert scan.num_punctuation == 4  # — “ ” .


def test_prepare_corpus_reports_the_vocabulary(tmp_path):
    corpus = tmp_path / 'captions.txt'
    corpus.write_text('a dog on a mat 😀\na dog on grass\n', encoding='utf-8')
    result = prepare_corpus(str(corpus), str(tmp_path / 'out'), min_count=2)
    report = result.vocab_report
    assert report.dropped_words == (('grass', 1), ('mat', 1))
    assert report.removed_chars == (('😀', 1), )
    assert WordVocabulary.load(result.vocab).words[4:] == ['a', 'dog', 'on']


def test_words_of_an_old_vocabulary_still_decode():
    """A vocabulary of the [a-z0-9] tokenizer (one token "dog's") still
    loads and decodes; its text tokenizes as the metric splits it."""
    vocab = WordVocabulary(['<pad>', '<bos>', '<eos>', '<unk>', 'a', "dog's",
                            'ball'])
    text = vocab.decode([4, 5, 6, 2])
    assert text == "a dog's ball"
    assert tokenize_caption(text) == ['a', 'dog', "'s", 'ball']
