"""Generative models of log-mel patches (VAE, diffusion) and their way back to audio."""
