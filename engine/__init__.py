"""The diffusion backend: torch, diffusers and peft. Imports nothing from Django."""

from engine import logfilters

logfilters.install()
