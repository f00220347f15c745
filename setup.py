"""mmpcm: PCM-Net (ECCV 2024) zero-shot image captioning for OpenMMLab."""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmpcm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmpcm',
    version=read_version(),
    description='PCM-Net zero-shot image captioning trained on synthetic '
    'images, as an mmengine/mmpretrain plugin',
    long_description=open('README.md', encoding='utf-8').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    # mmpcm, and the offline toy world's package from its project folder
    # (projects/toyworld); mmpcm itself never imports the toy world.
    packages=find_packages(exclude=('tests', 'configs', 'tools')) +
    ['mmpcm_toyworld'],
    package_dir={'mmpcm_toyworld': 'projects/toyworld/mmpcm_toyworld'},
    # the curated noun list of the concept vocabulary builder, and the
    # CHAIR metric's COCO object synonym table
    package_data={'mmpcm.preprocessing': ['resources/*.txt'],
                  'mmpcm.evaluation.metrics': ['resources/*.json']},
    python_requires='>=3.10',
    # torch and torchvision are installed first, for the user's CUDA.
    install_requires=[
        'torch>=2.6',
        'torchvision',
        'mmengine==0.10.7',
        'mmcv-lite>=2.0.0,<2.4.0',
        'mmpretrain==1.2.0',
        'open_clip_torch>=3.0',
        'transformers>=4.40',
        'diffusers>=0.30',
        'safetensors>=0.4',
        # SynC data refinement (tools/data/refine_pairs.py): exact
        # nearest-neighbour search, and the sentence encoder of its cycle
        # score (faiss-gpu may replace faiss-cpu)
        'faiss-cpu>=1.8',
        'sentence-transformers>=3',
        'pycocotools',
        'pycocoevalcap>=1.2',
        'numpy',
        'packaging',
        # ImageFont.load_default(size=...) for the concept pictures' labels
        'Pillow>=10.1',
        'tqdm',
        # training curves and validation captions in TensorBoard (the
        # default runtime's visualizer backend)
        'tensorboard',
    ],
    # the demo page (tools/demo/caption_demo.py); tested, so in 'tests' too
    extras_require={'demo': ['gradio>=4'],
                    'tests': ['pytest>=7', 'gradio>=4']},
    license='Apache License 2.0',
)
