"""The face codec: a face to a `.cvae` file of a few dozen bytes and back.

- `codec.py`: `Codec` (quantize, entropy-code, decode), its `CodecTable`,
  the quality levels, and `load_codec`, which finds the table beside a model
  file;
- `format.py`: the `.cvae` byte layout (the one description of it);
- `entropy_coding.py`: the range coder (constriction) over quantized codes;
- `litert.py`: the encoder and decoder as LiteRT files, run without TensorFlow;
- `batch.py`: compressing, decompressing and reconstructing files in batches;
- `report.py`: bytes and quality beside JPEG and WebP.
- `detail.py`: the detail layer, what bytes beyond the code buy.
"""

from cvae.codec.codec import (
                              CALIBRATION_STEPS,
                              DEFAULT_MODE,
                              DEFAULT_QUALITY,
                              DEFAULT_RUNG,
                              QUALITY_LEVELS,
                              RUNTIMES,
                              TABLE_SUFFIX,
                              Codec,
                              CodecTable,
                              calibrate,
                              codec_for,
                              compress,
                              decompress,
                              load_codec,
                              table_path,
                              weights_sha256,
)
from cvae.codec.format import MODES

__all__ = ["CALIBRATION_STEPS", "DEFAULT_MODE", "DEFAULT_QUALITY", "DEFAULT_RUNG", "MODES", "QUALITY_LEVELS",
           "RUNTIMES", "TABLE_SUFFIX", "Codec", "CodecTable", "calibrate", "codec_for",
           "compress", "decompress", "load_codec", "table_path", "weights_sha256"]
