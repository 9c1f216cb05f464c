"""Attacks on unlearned language models (the image-classifier attacks are `obliviate.classifier`)."""
