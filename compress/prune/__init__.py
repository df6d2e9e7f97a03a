"""Pruning: persistent masks (``masks``), magnitude / gradient pruning (``magnitude``),
structured pruning to a smaller dense model (``structured``), iterative magnitude pruning
and lottery tickets (``imp``), compact sparse artifacts (``sparse_io``)."""
