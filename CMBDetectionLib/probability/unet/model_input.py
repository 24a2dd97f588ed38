"""What the UNet takes in: 256x256 axial slices at its training pixel size.

Kept apart from :mod:`slicing` (which needs SciPy and scikit-image) so that the input checks can name the pixel
size the model sees without importing the image-processing stack.
"""

MODEL_SIZE = 256  # the ONNX model's fixed input: 256x256 slices
DEFAULT_PIXEL_MM = 0.9  # the shipped UNet's training pixel size (256x256 phantoms at 0.9 mm), when a card gives none
