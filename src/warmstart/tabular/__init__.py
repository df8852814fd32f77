"""Tabular regression, the flagship application of the transfer core."""
