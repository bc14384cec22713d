"""YAML recipes: batch jobs described in a file, checked into typed values.

::

    from fetchq.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe("recipes/fetch-urls.yaml")
    except RecipeError as exc:
        for problem in exc.problems:  # one located line each
            print(problem)
    else:
        queue = ResizableDispatchQueue(fetch, **recipe.queue.queue_kwargs())

A recipe is a :class:`FetchRecipe`, :class:`SmsRecipe` or :class:`ApiRecipe`
(``recipe.kind`` says which); ``recipe.sms.config()`` and
``recipe.api.config()`` build the adapters' configurations.

Only this package knows YAML; the core never imports it.  The keys are
documented in the README's recipe reference, generated from
:mod:`fetchq.recipe.schema`.
"""

from fetchq.recipe.errors import Problem, RecipeError
from fetchq.recipe.loader import Checked, check_recipe, load_recipe, parse_recipe
from fetchq.recipe.model import (
    ApiInputSpec,
    ApiRecipe,
    ApiSpec,
    FetchRecipe,
    FetchSpec,
    InputSpec,
    LaneSpec,
    OutputSpec,
    PaginationSpec,
    QueueKwargs,
    QueueSpec,
    Recipe,
    RetrySpec,
    SaveBodiesSpec,
    SmsInputSpec,
    SmsRecipe,
    SmsSpec,
    StateSpec,
    StatusSet,
)
from fetchq.recipe.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)
from fetchq.secrets import Secret, reveal

__all__ = [
    "ApiInputSpec",
    "ApiRecipe",
    "ApiSpec",
    "Checked",
    "FetchRecipe",
    "FetchSpec",
    "InputSpec",
    "LaneSpec",
    "OutputSpec",
    "PaginationSpec",
    "Problem",
    "QueueKwargs",
    "QueueSpec",
    "Recipe",
    "RecipeError",
    "RetrySpec",
    "SaveBodiesSpec",
    "Secret",
    "SmsInputSpec",
    "SmsRecipe",
    "SmsSpec",
    "StateSpec",
    "StatusSet",
    "check_recipe",
    "format_duration",
    "format_rate",
    "format_size",
    "load_recipe",
    "parse_duration",
    "parse_rate",
    "parse_recipe",
    "parse_size",
    "reveal",
]
