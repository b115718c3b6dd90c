"""questlab: a workbench for rating question–answer pairs on the 30 QUEST axes."""

__version__ = "0.2.0"
