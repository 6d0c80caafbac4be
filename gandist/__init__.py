"""gandist: distributed GAN training on Accelerate, WebDataset and W&B."""

__version__ = "0.1.0"
