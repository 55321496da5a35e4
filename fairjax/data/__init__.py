"""Face data sets, the seeds' data treatments and the input pipeline."""
