"""fairjax: group-fairness auditing and bias mitigation for deep image models, in JAX."""
