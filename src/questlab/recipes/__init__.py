"""Recipes: runs of runs from data to a submission in one command.

A recipe (:mod:`questlab.recipes.spec`) lists member configs, the ensembling method, the question
share and the post-processing; :func:`questlab.recipes.runner.run_recipe` runs the members on
shared grouped folds (reusing or resuming what an earlier call recorded), combines them into an
ensemble run with nested scores, and writes its submission. Built-ins: ``fast`` and ``best``.
"""

from questlab.recipes.runner import MemberOutcome, RecipeOutcome, run_recipe
from questlab.recipes.spec import RecipeSpec, builtin_names, load_recipe, parse_recipe

__all__ = ["MemberOutcome", "RecipeOutcome", "RecipeSpec", "builtin_names", "load_recipe", "parse_recipe", "run_recipe"]
