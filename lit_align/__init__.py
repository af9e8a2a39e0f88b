"""lit_align: align language models with PyTorch Lightning on fused log-prob and preference-loss kernels."""
__version__ = "0.1.0"
