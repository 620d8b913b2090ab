"""Exporters: the fitted Localizer -> one ONNX graph -> FP16/INT8 engines; formats as data."""
