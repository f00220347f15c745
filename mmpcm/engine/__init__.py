from .hooks import (PCMCaptionIdsHook, PCMLoadReleaseHook,
                    PCMPredictionDumpHook)
from .schedulers import NoamLR, NoamParamScheduler, noam_value

__all__ = [
    'NoamLR', 'NoamParamScheduler', 'PCMCaptionIdsHook', 'PCMLoadReleaseHook',
    'PCMPredictionDumpHook', 'noam_value'
]
