from .hooks import PCMLoadReleaseHook, PCMPredictionDumpHook
from .schedulers import NoamLR, NoamParamScheduler, noam_value

__all__ = [
    'NoamLR', 'NoamParamScheduler', 'PCMLoadReleaseHook',
    'PCMPredictionDumpHook', 'noam_value'
]
