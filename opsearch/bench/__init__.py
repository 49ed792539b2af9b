"""Measuring and reporting: the suite against PyTorch's best, the PyTorch baselines, the HTML report."""
