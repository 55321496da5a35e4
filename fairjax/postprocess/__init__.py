"""Post-processing: corrections fitted on one split's predictions and applied to another's.

``thresholds``: Hardt, Price & Srebro's group thresholds (``python -m fairjax.postprocess``);
``regression``: corrections of a regressor's predictions (predicted ages). Nothing is imported here, so
that ``python -m fairjax.postprocess`` and each module load only what they use.
"""
