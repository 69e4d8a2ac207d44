"""Where latent codes come from, and walks through the latent space."""
