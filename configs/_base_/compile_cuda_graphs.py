# The paper recipe's training step on a GPU, compiled and replayed as CUDA
# graphs (torch.compile's 'reduce-overhead' mode): at batch 32 PCM-Net's
# step is launch-bound (many small kernels). The updates are the same: the
# caption rows have static shapes (max_len positions) and the schedule's
# fused Adam takes its lr as an input, so the step compiles once and then
# replays. On a CPU the mode compiles without graphs. Speed and the offline
# check: docs/benchmarks.md. To train eagerly (debugging, several GPUs):
#   --cfg-options compile=False
compile = dict(mode='reduce-overhead')
