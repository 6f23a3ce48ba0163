"""Label-fraction fine-tuning and evaluation of 2D classifiers (paper 000 §3, issue 6)."""
