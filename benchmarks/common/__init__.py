"""Helpers shared by the benchmark scripts (not part of the mmpcm package).

Timing, profiler windows, FLOP arithmetic, result rows and tables, a
description of the machine, the repo's configs, and the random inputs the
benchmarks run on. The scripts use them as ``from benchmarks import
common`` (run from the repo root: ``python -m benchmarks.<script>``).
"""
from .configs import REPO_ROOT, load_config, model_overrides, repo_path
from .flops import ModelDims
from .inputs import (CAPTION_MEAN_WORDS, CAPTION_MIN_WORDS, make_word_list,
                     random_captions, random_test_features, write_concepts,
                     write_feature_store, write_npz_samples, write_vocabulary)
from .machine import (cpu_model, describe_device, describe_load,
                      describe_software, hide_cuda_if_cpu, resolve_device,
                      start_benchmark, usable_cores)
from .results import ThroughputResult, format_table, write_json
from .shapes import (CLIP_SHAPES, COCO_PAIRS, COCO_TEST_IMAGES,
                     COCO_VOCAB_SIZE, NUM_CONCEPTS, ClipShape)
from .timing import (Stopwatch, compile_modules, synchronize,
                     uncompile_modules, wrap_timed)
from .tracing import StepTracer, TraceSummary, summarize_trace

__all__ = [
    'CAPTION_MEAN_WORDS', 'CAPTION_MIN_WORDS', 'CLIP_SHAPES', 'COCO_PAIRS',
    'COCO_TEST_IMAGES', 'COCO_VOCAB_SIZE', 'ClipShape', 'ModelDims',
    'NUM_CONCEPTS', 'REPO_ROOT', 'Stopwatch', 'StepTracer',
    'ThroughputResult', 'TraceSummary', 'compile_modules', 'cpu_model',
    'describe_device', 'describe_load', 'describe_software', 'format_table',
    'hide_cuda_if_cpu', 'load_config', 'make_word_list', 'model_overrides',
    'random_captions', 'random_test_features', 'repo_path', 'resolve_device',
    'start_benchmark', 'summarize_trace', 'synchronize', 'uncompile_modules',
    'usable_cores', 'wrap_timed', 'write_concepts', 'write_feature_store',
    'write_json', 'write_npz_samples', 'write_vocabulary'
]
