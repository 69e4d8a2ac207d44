"""The model: configuration, layers, networks, the VAE and its objective, saving."""
