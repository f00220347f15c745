"""One list-file reader and one folder scanner for every tool.

Feature extraction, testing from images (ImageFolderCaptionDataset) and the
caption inferencer (tools/caption.py) must read one list file, and scan one
folder, into the same images in the same order
(:mod:`mmpcm.datasets.image_lists`)."""
import os
import os.path as osp

import pytest
from PIL import Image

from mmpcm.apis import expand_inputs
from mmpcm.datasets import ImageFolderCaptionDataset
from mmpcm.datasets.image_lists import (IMAGE_EXTENSIONS, read_path_list,
                                        scan_folder)
from mmpcm.preprocessing.extraction import items_from_folder, items_from_list
from mmpcm.utils.cli import InputError, MissingInputError, error_line


def _image(path, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (8, 6), (200, 30, 30)).save(path, format=fmt)


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """An image folder and a list file naming some of its images.

    The folder holds an upper-case extension, a nested folder, hidden files
    and folders (real images, to be skipped), a link to a file (taken) and
    a link to a folder (not followed: its stems would repeat). The list file
    has a UTF-8 byte-order mark before a comment (a BOM left in the text
    would make that line a path), CRLF endings, blank lines, an indented
    comment, relative and absolute paths, not in sorted order. The working
    folder is ``tmp_path`` and the list is given by a relative path, so
    relative entries resolve against the list's folder, not the cwd.
    """
    monkeypatch.chdir(tmp_path)
    images = tmp_path / 'images'
    _image(images / 'a.png')
    _image(images / 'B.JPG', 'JPEG')
    _image(images / 'z.gif')
    _image(images / 'sub' / 'c.jpeg', 'JPEG')
    _image(images / 'sub' / 'deeper' / 'd.bmp')
    _image(images / '.hidden.png')
    _image(images / '.cache' / 'e.png')
    _image(images / 'sub' / '.f.png')
    os.symlink(images / 'a.png', images / 'linked.png')
    os.symlink(images / 'sub', images / 'sub_link')
    lists = tmp_path / 'lists'
    lists.mkdir()
    text = ('# images for the parity test\r\n'
            '../images/B.JPG\r\n'
            '\r\n'
            '   # an indented comment\n'
            f'{images / "sub" / "c.jpeg"}\n'
            '  ../images/a.png  \n'
            '\n')
    (lists / 'images.txt').write_bytes(b'\xef\xbb\xbf' + text.encode())
    return dict(list=('lists/images.txt', ['B.JPG', 'sub/c.jpeg', 'a.png']),
                folder=('images', [
                    'B.JPG', 'a.png', 'linked.png', 'z.gif', 'sub/c.jpeg',
                    'sub/deeper/d.bmp'
                ]))


def _extraction(source, kind):
    read = items_from_list if kind == 'list' else items_from_folder
    return [item.path for item in read(source)]


def _dataset(source, kind):
    if kind == 'list':
        dataset = ImageFolderCaptionDataset(ann_file=source, image_size=32)
    else:
        dataset = ImageFolderCaptionDataset(data_prefix=dict(img_path=source),
                                            image_size=32)
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


def _inferencer(source, kind):
    return [item.source for item in expand_inputs(source)]


READERS = dict(extraction=_extraction,
               dataset=_dataset,
               inferencer=_inferencer)


@pytest.mark.parametrize('kind', ['list', 'folder'])
@pytest.mark.parametrize('reader', sorted(READERS))
def test_every_tool_reads_the_same_images(inputs, tmp_path, reader, kind):
    source, names = inputs[kind]
    found = READERS[reader](source, kind)
    images = tmp_path / 'images'
    assert [osp.abspath(p)
            for p in found] == [osp.normpath(images / name) for name in names]


def test_the_list_reader_keeps_lines_and_numbers(inputs, tmp_path):
    listed = read_path_list('lists/images.txt')
    assert [(image.entry, image.lineno) for image in listed
            ] == [('../images/B.JPG', 2),
                  (str(tmp_path / 'images' / 'sub' / 'c.jpeg'), 5),
                  ('../images/a.png', 6)]
    # relative entries: joined to the list's folder as it was given
    assert listed[0].path == osp.join('lists', '../images/B.JPG')
    assert listed[1].path == listed[1].entry  # absolute: as written


def test_only_the_inferencer_takes_non_image_files(tmp_path):
    """Captioning reports a file that is not an image; extraction and
    testing from images leave it out (extraction logs the count)."""
    _image(tmp_path / 'a.png')
    (tmp_path / 'notes.txt').write_text('not an image')
    scan = scan_folder(tmp_path)
    assert scan == (['a.png'], ['notes.txt'])
    assert scan_folder(tmp_path, extensions=None) == (['a.png',
                                                       'notes.txt'], [])
    assert [item.source for item in expand_inputs(str(tmp_path))
            ] == [str(tmp_path / 'a.png'),
                  str(tmp_path / 'notes.txt')]
    assert [item.path for item in items_from_folder(tmp_path)
            ] == [str(tmp_path / 'a.png')]
    assert _dataset(str(tmp_path), 'folder') == [str(tmp_path / 'a.png')]


def test_one_extension_list_ignoring_case(tmp_path):
    for index, suffix in enumerate(IMAGE_EXTENSIONS):
        (tmp_path / f'{index}{suffix.upper()}').write_bytes(b'')
    (tmp_path / 'x.jpg.txt').write_bytes(b'')
    assert len(scan_folder(tmp_path).files) == len(IMAGE_EXTENSIONS)
    assert scan_folder(tmp_path).skipped == ['x.jpg.txt']


def _one_line(call, *args) -> str:
    with pytest.raises(InputError) as info:
        call(*args)
    line, user_error = error_line(info.value)
    assert user_error and '\n' not in line
    return line


def test_bad_lists_and_folders_get_one_line(tmp_path):
    gone = tmp_path / 'gone.txt'
    for call in (read_path_list, items_from_list):
        with pytest.raises(MissingInputError):
            call(gone)
        assert _one_line(
            call, gone) == (f'{gone}: no such image list file; check the path')
    assert _one_line(scan_folder, tmp_path / 'nope') == (
        f'{tmp_path / "nope"}: no such image folder; check the path')
    with pytest.raises(MissingInputError):
        items_from_folder(tmp_path / 'nope')
    typed = tmp_path / 'karpathy_test_images.jsonl'
    typed.write_text('{"image_id": 1, "file_name": "a.jpg"}\n')
    for call in (items_from_list, lambda p: _dataset(str(p), 'list')):
        assert _one_line(
            call,
            typed).startswith(f'{typed}: a JSON file, not a plain image list')
    assert _one_line(read_path_list, tmp_path).startswith(
        f'{tmp_path}: is a folder, not an image list file')
    # a file whose name starts with '#' is named as ./#name
    listed = tmp_path / 'list.txt'
    listed.write_text('#a.jpg\n./#b.jpg\n')
    assert [image.entry for image in read_path_list(listed)] == ['./#b.jpg']


def test_a_stem_used_twice_is_one_error_in_every_tool(tmp_path):
    _image(tmp_path / 'x' / 'a.png')
    _image(tmp_path / 'y' / 'a.jpg', 'JPEG')
    listed = tmp_path / 'list.txt'
    listed.write_text('x/a.png\ny/a.jpg\n')
    for call, source in [(items_from_folder, tmp_path),
                         (items_from_list, listed),
                         (lambda p: _dataset(str(p), 'folder'), tmp_path),
                         (lambda p: _dataset(str(p), 'list'), listed)]:
        line = _one_line(call, source)
        assert line.startswith(f"{source}: image id 'a' (the file stem) is "
                               'used by both ')
        assert line.endswith('; image ids must be unique: rename or leave '
                             'out one of the files')
