"""Explanations of face classifiers: attribution maps, LIME and their faithfulness."""
