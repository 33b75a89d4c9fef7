"""onnxcam.apps: the applications on top of the layers.

The command line (:mod:`onnxcam.apps.cli` and one command module per area), the demo, the
localization report writer and the training of the synthetic models. Applications may import every
layer; no layer imports them.
"""
