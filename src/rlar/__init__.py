"""rlar: clinically aligned multitask thyroid ultrasound assessment.

Layers, bottom to top (a module imports only from its own layer and those below it): the ground floor (errors,
environment, tasks, runs), data, radiomics, models and losses, strategies, training and evaluation, inference,
experiments, reporting, serving, cli. ``tests/test_import_layers.py`` holds the table and checks every import.
"""

__version__ = "0.1.0"
