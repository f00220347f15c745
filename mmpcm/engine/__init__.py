from .hooks import (PCMCheckpointFitHook, PCMLoadReleaseHook,
                    PCMPredictionDumpHook, PCMResumeScheduleHook)
from .schedulers import NoamLR, NoamParamScheduler, noam_value

__all__ = [
    'NoamLR', 'NoamParamScheduler', 'PCMCheckpointFitHook',
    'PCMLoadReleaseHook', 'PCMPredictionDumpHook', 'PCMResumeScheduleHook',
    'noam_value'
]
