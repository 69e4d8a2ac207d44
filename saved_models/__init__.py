"""The shipped models, installed with the package as `cvae.saved_models` (the
wheel maps this folder there), so the default model is found from any install."""
