from .schedulers import NoamLR, NoamParamScheduler, noam_value

__all__ = ['NoamLR', 'NoamParamScheduler', 'noam_value']
