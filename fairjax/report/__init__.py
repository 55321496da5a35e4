"""Tables and plots that a person reads first: per-group rates, disparities, training curves."""
