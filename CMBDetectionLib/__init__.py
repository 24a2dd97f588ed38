"""CMBDetection engine: cerebral microbleed detection on susceptibility-weighted MRI.

Qt-free and importable both in 3D Slicer's Python and in a plain virtual environment.
Heavy dependencies (TensorFlow, ONNX Runtime) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
