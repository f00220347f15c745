"""A procedurally generated stand-in for the real world, for offline runs.

Simple scenes of coloured shapes on a few backgrounds, described by a caption
grammar with several paraphrases per scene; a "real" renderer with natural
variation; a defective caption-to-image generator standing in for Stable
Diffusion (wrong colour or shape, missing or extra object in the salient
region, and a global style shift); and a tiny CLIP trained contrastively on
real renders of captions disjoint from the captioning corpus. The whole
PCM-Net pipeline runs on it through the same code paths as on real data.
"""
