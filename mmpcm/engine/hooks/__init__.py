from .load_release_hook import PCMLoadReleaseHook
from .prediction_dump_hook import PREDICTIONS_FILE, PCMPredictionDumpHook

__all__ = ['PCMLoadReleaseHook', 'PCMPredictionDumpHook', 'PREDICTIONS_FILE']
