"""Attacks on unlearned language models and on image classifiers (`attack.classifier`)."""
