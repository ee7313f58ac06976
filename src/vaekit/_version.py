"""The package version, in a module that imports nothing.

Modules that record the version (model files, checkpoints, run info, ``--version``) import it
from here rather than from ``vaekit``, whose ``__init__`` imports them back; pyproject.toml reads
it from here too (``[tool.setuptools.dynamic]``).
"""

__version__ = "0.1.0"
