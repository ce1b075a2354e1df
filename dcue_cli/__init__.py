"""dcue: deep content-user embeddings for cold-start music recommendation."""

__version__ = "0.1.0"
