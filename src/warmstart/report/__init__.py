"""Study results as tables, plots and one self-contained HTML page. Reads results only."""
