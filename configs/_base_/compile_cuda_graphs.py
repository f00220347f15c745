# The paper recipe's training step on a GPU, compiled and replayed as CUDA
# graphs (torch.compile's 'reduce-overhead' mode). At batch 32 PCM-Net's
# step is launch-bound: a thousand small kernels, each behind Python and
# the dispatcher, for under a millisecond of arithmetic. Replaying the
# captured step trained 2.43x as fast as the authors' loop on one H100
# (docs/benchmarks.md), with the same updates: the compiled step keeps
# captions at max_len positions (static shapes; the ignored padding does
# not change the loss) and the schedule's fused Adam takes its lr as an
# input, so the step compiles once (about a minute at the start) and then
# replays. An offline-world check on the GPU kept CIDEr within seed noise.
# On a CPU the mode compiles without graphs. To train eagerly (debugging,
# or several GPUs, where this mode was not measured):
#   --cfg-options compile=False
compile = dict(mode='reduce-overhead')
