"""Speed and quality measurements. `python -m benchmarks [NAME...]` runs them (see __main__)."""
