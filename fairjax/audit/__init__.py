"""`python -m fairjax.audit`: group-fairness audit of predictions in a CSV file."""
