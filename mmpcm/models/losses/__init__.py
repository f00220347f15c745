from .clip_weighted_ce import CLIPWeightedCELoss

__all__ = ['CLIPWeightedCELoss']
