from .best_checkpoint import (BEST_METRIC, CheckpointNotFoundError,
                              find_best_checkpoint, resolve_checkpoint)
from mmpcm.engine.checkpoint_errors import (checkpoint_in_use,
                                            naming_checkpoint)
from .inferencer import (CaptionResult, CaptionSummary, ImageFailure,
                         PCMCaptionInferencer, caption_to_jsonl,
                         expand_inputs)
from .release import (ModelSource, Release, ReleaseFormatError, ReleaseInfo,
                      build_captioner, is_release_file, load_model_source,
                      load_release, publish_release, read_release_info)
from mmpcm.engine.hooks import PCMLoadReleaseHook, PCMPredictionDumpHook
from .run_config import (CaptionTestResult, apply_checkpoint_to_cfg,
                         check_test_evaluator, default_work_dir, paper_row,
                         prepare_cfg, run_test)

__all__ = [
    'BEST_METRIC', 'CheckpointNotFoundError', 'find_best_checkpoint',
    'resolve_checkpoint', 'CaptionResult', 'CaptionSummary', 'CaptionTestResult', 'ImageFailure',
    'ModelSource', 'PCMCaptionInferencer', 'PCMLoadReleaseHook',
    'PCMPredictionDumpHook', 'Release', 'ReleaseFormatError', 'ReleaseInfo',
    'apply_checkpoint_to_cfg', 'build_captioner', 'caption_to_jsonl',
    'check_test_evaluator', 'checkpoint_in_use', 'default_work_dir',
    'expand_inputs', 'is_release_file', 'load_model_source', 'load_release',
    'naming_checkpoint', 'paper_row', 'prepare_cfg', 'publish_release',
    'read_release_info', 'run_test'
]
