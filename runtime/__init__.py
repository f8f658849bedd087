"""The offline runtime: data formats, lexical analysis, BM25, metrics and search. No torch."""
