"""chartrvr-nb: Chart-RVR GRPO training, reward debugging and evaluation for Colab and Jupyter.

Importing the package is cheap: torch, transformers and sentence-transformers load only inside
the functions that need them, so notebooks and the CLI start fast.
"""

__version__ = "0.1.0"
