"""Images in: files, faces and their framing, datasets."""
