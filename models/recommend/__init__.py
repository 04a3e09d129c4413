"""Recommendation models behind one contract (:mod:`models.recommend.base`), and the train stage."""

from models.recommend.base import RESULT_COLUMNS, NotFittedError, RecommenderModel, UnsupportedUsersError
from models.recommend.hybrid import HybridLightFM
from models.recommend.popularity import Popularity
from models.recommend.train import TrainReport, train_and_recommend, write_recommendations

__all__ = [
    "RESULT_COLUMNS",
    "HybridLightFM",
    "NotFittedError",
    "Popularity",
    "RecommenderModel",
    "TrainReport",
    "UnsupportedUsersError",
    "train_and_recommend",
    "write_recommendations",
]
