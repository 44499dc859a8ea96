"""Datasets: readers for each annotation format, the synthetic shapes world, images, batches."""
