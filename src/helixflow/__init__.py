"""HelixFlow: genomic deep learning from the files a lab already has."""

__version__ = "0.1.0"
