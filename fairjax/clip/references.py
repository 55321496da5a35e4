"""The seeds' published CLIP figures, which audits and tables print beside their own as references.

A module of plain data with no imports, so that every CLIP module (the zero-shot audit, its files, the
debiasing, the experiments' tables) reads the same numbers without importing one another.
"""

# Seed 003 §Results (OpenAI CLIP ViT-B/32 on 24,105 UTKFace images). Error shares are given only for
# the races its text names.
SEED_003_ZERO_SHOT = {
    "male/female": {"predicted_male": 0.6630, "true_male": 0.5220, "best_threshold": 0.2,
                    "best_macro_f1": 0.9603, "accuracy_at_best": 0.9604, "accuracy_at_0.5": 0.8503,
                    "error_share_by_race": {"White": 0.3309}},
    "man/woman": {"predicted_male": 0.5365, "true_male": 0.5220, "best_threshold": 0.3,
                  "best_macro_f1": 0.9487, "accuracy_at_best": 0.9487, "accuracy_at_0.5": 0.9421,
                  "error_share_by_race": {"Asian": 0.3641, "White": 0.2921}},
    "boy/girl": {"predicted_male": 0.6134, "true_male": 0.5220, "best_threshold": 0.2,
                 "best_macro_f1": 0.9412, "accuracy_at_best": 0.9413, "accuracy_at_0.5": 0.8865,
                 "error_share_by_race": {"White": 0.4064, "Asian": 0.2615}},
}
# Seed 000 §7.3 (CLIP on UTKFace, prompts not stated): macro figures, and the per-group share classified
# correctly that it reports as selection rates, with the ratios it names.
SEED_000_ZERO_SHOT = {
    "gender": {"macro_accuracy": 0.9581212526266386, "macro_f1": 0.9579553326742262,
               "accuracy_by_group": {"male": 0.9515738498789347, "female": 0.9624558303886925}},
    "race": {"macro_accuracy": 0.6803203012378448, "macro_f1": 0.6768578431973549,
             "accuracy_by_group": {"White": 0.8734491315136477, "Black": 0.7637969094922737,
                                   "Asian": 0.9432314410480349, "Indian": 0.7811320754716982,
                                   "Others": 0.08259587020648967},
             "accuracy_ratio": {"Black/White": 0.8744606662653021, "Indian/White": 0.8943074614065181,
                                "White/Asian": 0.926017829243636}},
}
# Seed 000 §8.3.1-8.3.2: CLIP's gender zero-shot on UTKFace after subspace removal with α = 0.4.
SEED_000_SUBSPACE = {"alpha": 0.4, "macro_accuracy": 0.778, "macro_f1": 0.779,
                     "disparate_impact": 0.9939674340077338, "tpr_difference": 0.07596311224720897,
                     "fpr_difference": 0.07596311224720909}
# Seed 000 §7.3.2's ratios of per-race figures, (numerator, denominator).
SEED_000_RACE_PAIRS = (("Black", "White"), ("Indian", "White"), ("White", "Asian"))
# Seed 000 §8.2 (CLIP fine-tuned on 2,000 UTKFace images with gender prompts, EO rule): macro accuracy
# and F1 0.93, TPR 0.92 (women) and 0.94 (men), and a selection-rate ratio of 0.9 between the genders.
SEED_000_FINETUNE = {"macro_accuracy": 0.93, "macro_f1": 0.93, "accuracy_female": 0.92, "accuracy_male": 0.94,
                     "selection_rate_ratio": 0.9}
