"""From a caption corpus to SynthImgCap training data.

Corpus preparation, synthetic image generation (diffusers), CLIP feature and
score extraction (open_clip), the concept vocabulary, and import of the
authors' released features. Entry points live in ``tools/data/``. Import the
submodules directly (``from mmpcm.preprocessing.corpus import ...``).
"""
