"""Sequence models; each is rebuilt from a JSON config and weights in safetensors."""
