"""The offline toy world: a procedurally generated stand-in for captions,
Stable Diffusion, real photos and CLIP, on which mmpcm's whole pipeline
runs offline (projects/toyworld/README.md)."""
