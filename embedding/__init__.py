"""winnow.embedding: text in, L2-normalised vectors out (sentence-transformers, TorchWordPiece on GPUs)."""
