"""warmstart: reuse what a trained neural network already knows.

Layer initialization (``init``), freezing (``freeze``), learning-rate groups
(``param_groups``), safe checkpoints (``weights``), L2-SP (``regularize``), named
fine-tuning strategies (``strategies``) and one trainer (``train``), for any
``torch.nn.Module``; ``tabular`` applies them to tabular regression.
"""

__version__ = "0.1.0"
