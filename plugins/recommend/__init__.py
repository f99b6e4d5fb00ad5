"""Recommendation: the ``movielens``, ``ratings-csv`` and ``events`` sources, the
``hybrid-recommender`` model (collaborative EASE plus an item-text tower, for cold start) and
the ``recommend`` api (recommend, similar, similar_text, event).

numpy only; importing this package loads nothing heavy.
"""

from __future__ import annotations

import heirloom
from heirloom_plugins.recommend.api import RecommendApi
from heirloom_plugins.recommend.console import CONSOLE
from heirloom_plugins.recommend.events import EventsSource
from heirloom_plugins.recommend.model import HybridRecommender
from heirloom_plugins.recommend.movielens import MovieLensSource
from heirloom_plugins.recommend.ratings_csv import RatingsCsvSource


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("movielens", MovieLensSource)
    register("ratings-csv", RatingsCsvSource)
    register("events", EventsSource)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("hybrid-recommender", HybridRecommender)


@heirloom.hookimpl
def heirloom_register_apis(register):
    register("recommend", RecommendApi)


@heirloom.hookimpl
def heirloom_register_consoles(register):
    register("recommend", CONSOLE)
