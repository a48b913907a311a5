"""Networks: shared layers (layers.py) and the denoisers and codecs built from them."""
